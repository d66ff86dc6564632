"""Tiny random models of the GELU architectures the release path must cover (offline, from configs).

``ARCHS`` maps a case name to (transformers model class name, config class name, config kwargs). Every
model is a few thousand parameters: 2 layers (1 where a family needs more structure), hidden 16-32.
``build(name)`` makes the model (seeded, eval mode).
"""

from __future__ import annotations

import torch
import transformers

_TEXT = dict(vocab_size=64, max_position_embeddings=64)
_BERTLIKE = dict(_TEXT, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24)
_VISION = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    image_size=16,
    patch_size=8,
    num_channels=3,
)
_CLIP_TEXT = dict(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=16,
    hidden_act="gelu",
    projection_dim=8,
)
_CLIP_VISION = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=24,
    image_size=16,
    patch_size=8,
    hidden_act="gelu",
    projection_dim=8,
)

#: case → (model class, config class, config kwargs)
ARCHS: dict[str, tuple[str, str, dict]] = {
    "bert": ("BertForMaskedLM", "BertConfig", _BERTLIKE),
    "bert_gelu_python_tanh": ("BertModel", "BertConfig", dict(_BERTLIKE, hidden_act="gelu_python_tanh")),
    "roberta": ("RobertaForSequenceClassification", "RobertaConfig", dict(_BERTLIKE, pad_token_id=1)),
    "distilbert": (
        "DistilBertForMaskedLM",
        "DistilBertConfig",
        dict(_TEXT, dim=16, n_layers=2, n_heads=2, hidden_dim=24),
    ),
    "albert": ("AlbertForMaskedLM", "AlbertConfig", dict(_BERTLIKE, embedding_size=8)),
    "electra_pretraining": ("ElectraForPreTraining", "ElectraConfig", dict(_BERTLIKE, embedding_size=16)),
    "electra_classifier": ("ElectraForSequenceClassification", "ElectraConfig", dict(_BERTLIKE, embedding_size=16)),
    "deberta_v2": ("DebertaV2ForSequenceClassification", "DebertaV2Config", dict(_BERTLIKE, pooler_hidden_size=16)),
    "vit": ("ViTForImageClassification", "ViTConfig", _VISION),
    "deit": ("DeiTForImageClassification", "DeiTConfig", _VISION),
    "beit": ("BeitForImageClassification", "BeitConfig", dict(_VISION, vocab_size=32)),
    "swin": (
        "SwinForImageClassification",
        "SwinConfig",
        dict(image_size=16, patch_size=4, num_channels=3, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2),
    ),
    "convnext": (
        "ConvNextForImageClassification",
        "ConvNextConfig",
        dict(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=16),
    ),
    "siglip": (
        "SiglipModel",
        "SiglipConfig",
        dict(
            text_config=dict(_CLIP_TEXT, hidden_act="gelu_pytorch_tanh"),
            vision_config=dict(_CLIP_VISION, hidden_act="gelu_pytorch_tanh"),
        ),
    ),
    "clip_gelu": (
        "CLIPModel",
        "CLIPConfig",
        dict(text_config=_CLIP_TEXT, vision_config=_CLIP_VISION, projection_dim=8),
    ),
    "whisper": (
        "WhisperModel",
        "WhisperConfig",
        dict(
            vocab_size=64,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=24,
            decoder_ffn_dim=24,
            num_mel_bins=8,
            max_source_positions=8,
            max_target_positions=16,
            decoder_start_token_id=1,
            pad_token_id=0,
        ),
    ),
    "wav2vec2": (
        "Wav2Vec2Model",
        "Wav2Vec2Config",
        dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=24,
            conv_dim=(8, 8),
            conv_stride=(5, 2),
            conv_kernel=(10, 3),
            num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=2,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
        ),
    ),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=64)),
    "gpt_neo": (
        "GPTNeoForCausalLM",
        "GPTNeoConfig",
        dict(
            vocab_size=64,
            hidden_size=16,
            num_layers=2,
            num_heads=2,
            attention_types=[[["global"], 2]],
            max_position_embeddings=64,
        ),
    ),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXConfig", _BERTLIKE),
    "gptj": (
        "GPTJForCausalLM",
        "GPTJConfig",
        dict(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=64, rotary_dim=4),
    ),
    "codegen": (
        "CodeGenForCausalLM",
        "CodeGenConfig",
        dict(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=64, n_ctx=64, rotary_dim=4),
    ),
    "phi": ("PhiForCausalLM", "PhiConfig", dict(_BERTLIKE, hidden_act="gelu_new")),
    "falcon": (
        "FalconForCausalLM",
        "FalconConfig",
        dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, activation="gelu"),
    ),
    "bloom": ("BloomForCausalLM", "BloomConfig", dict(vocab_size=64, hidden_size=16, n_layer=2, n_head=2)),
    "t5_gated_gelu": (
        "T5Model",
        "T5Config",
        dict(
            vocab_size=64,
            d_model=16,
            d_kv=8,
            d_ff=24,
            num_layers=1,
            num_heads=2,
            feed_forward_proj="gated-gelu",
            decoder_start_token_id=0,
        ),
    ),
    "bart": (
        "BartForConditionalGeneration",
        "BartConfig",
        dict(
            vocab_size=64,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=24,
            decoder_ffn_dim=24,
            max_position_embeddings=64,
        ),
    ),
    "gemma": (
        "GemmaForCausalLM",
        "GemmaConfig",
        dict(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=24,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            hidden_activation="gelu_pytorch_tanh",
        ),
    ),
    # not GELU: the refusals
    "clip_quick_gelu": (
        "CLIPModel",
        "CLIPConfig",
        dict(
            text_config=dict(_CLIP_TEXT, hidden_act="quick_gelu"),
            vision_config=dict(_CLIP_VISION, hidden_act="quick_gelu"),
            projection_dim=8,
        ),
    ),
    "bert_silu": ("BertModel", "BertConfig", dict(_BERTLIKE, hidden_act="silu")),
    "bert_relu": ("BertModel", "BertConfig", dict(_BERTLIKE, hidden_act="relu")),
}
#: Cases with no GELU at all (conversion refuses them).
NOT_GELU = ("clip_quick_gelu", "bert_silu", "bert_relu")
#: Cases whose GELUs no config field controls (some or all): the release needs the explicit allow flag.
#: Whisper: functional conv stem; DeBERTa-v2: functional pooler; ELECTRA classifier: hard-coded head;
#: BLOOM: BloomGelu has no config field at all (nothing convertible).
REMNANT_CASES = ("whisper", "deberta_v2", "electra_classifier")
NOTHING_CONTROLLED = ("bloom",)


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """A fresh tiny random model for case ``name`` (seeded, eval mode)."""
    model_cls, config_cls, kwargs = ARCHS[name]
    config = getattr(transformers, config_cls)(**kwargs)
    torch.manual_seed(seed)
    return getattr(transformers, model_cls)(config).eval()
