import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny_data import tiny_bert, tiny_gpt2, tiny_vit

from hf_lambda_gelu import (
    NotLambdaGELUModelError,
    add_lambda_modules_to_save,
    convert_to_lambda_gelu,
    lambda_param_groups,
)


def test_groups_split_decay_no_decay_and_lambda():
    model = convert_to_lambda_gelu(tiny_bert())
    groups = lambda_param_groups(model, lr=1e-3, weight_decay=0.1, lambda_learning_rate=0.02)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 0.02]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.0]
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay, lam = ([names[id(p)] for p in g["params"]] for g in groups)
    assert all(n.endswith("lambda_raw") for n in lam) and len(lam) == 2
    assert not any("bias" in n or "LayerNorm" in n for n in decay)
    assert any(n.endswith("bias") for n in no_decay) and any("LayerNorm" in n for n in no_decay)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # one real step moves every group
    before = [p.detach().clone() for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups)
    out = model(input_ids=torch.randint(1, 60, (4, 6)), labels=torch.tensor([0, 1, 0, 1]))
    out.loss.backward()
    opt.step()
    after = [p.detach() for g in groups for p in g["params"]]
    assert sum(not torch.equal(a, b) for a, b in zip(after, before)) >= len(before) - 2  # pooler grads may be 0


def test_groups_find_lambda_in_peft_wrapped_model():
    model = convert_to_lambda_gelu(tiny_bert())
    lora = add_lambda_modules_to_save(LoraConfig(target_modules=["query", "value"], r=4), model)
    peft_model = get_peft_model(model, lora)
    groups = lambda_param_groups(peft_model, lr=1e-3, weight_decay=0.0, lambda_learning_rate=0.02)
    lam_group = [g for g in groups if g.get("lambda_group")]
    assert len(lam_group) == 1 and len(lam_group[0]["params"]) == 2
    assert all(p.requires_grad for p in lam_group[0]["params"])


@pytest.mark.parametrize(
    "make_model, model_type, targets",
    [(tiny_bert, "bert", ["query", "value"]), (tiny_vit, "vit", ["q_proj", "v_proj"]), (tiny_gpt2, "gpt2", ["c_attn"])],
)
def test_lora_helper_keeps_every_lambda_trainable_for_each_architecture(make_model, model_type, targets):
    model = convert_to_lambda_gelu(make_model())
    n_lambda = len(lambda_param_groups(model, lr=1e-3, weight_decay=0.0, lambda_learning_rate=0.02)[-1]["params"])
    for key in (model_type, model):  # by model_type string, or read from the converted model
        lora = add_lambda_modules_to_save(LoraConfig(target_modules=targets, r=4), key)
        peft_model = get_peft_model(convert_to_lambda_gelu(make_model()), lora)
        lam = [
            g
            for g in lambda_param_groups(peft_model, lr=1e-3, weight_decay=0.0, lambda_learning_rate=0.02)
            if g.get("lambda_group")
        ]
        assert len(lam) == 1 and len(lam[0]["params"]) == n_lambda


def test_lora_helper_rejects_unknown_model_type_and_plain_models():
    with pytest.raises(ValueError, match="model_type='t5'"):
        add_lambda_modules_to_save(LoraConfig(target_modules=["q"]), "t5")
    with pytest.raises(NotLambdaGELUModelError, match="has no LambdaGELU module"):
        add_lambda_modules_to_save(LoraConfig(target_modules=["q"]), tiny_bert())
