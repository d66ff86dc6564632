import torch
from peft import LoraConfig, get_peft_model
from tiny_data import tiny_bert

from hf_lambda_gelu import add_lambda_modules_to_save, convert_to_lambda_gelu, lambda_param_groups


def test_groups_split_decay_no_decay_and_lambda():
    model = convert_to_lambda_gelu(tiny_bert())
    groups = lambda_param_groups(model, lr=1e-3, weight_decay=0.1, lambda_lr=0.02)
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
    groups = lambda_param_groups(peft_model, lr=1e-3, weight_decay=0.0, lambda_lr=0.02)
    lam_group = [g for g in groups if g.get("lambda_group")]
    assert len(lam_group) == 1 and len(lam_group[0]["params"]) == 2
    assert all(p.requires_grad for p in lam_group[0]["params"])
