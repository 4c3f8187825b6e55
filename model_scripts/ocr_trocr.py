"""TrOCR-style OCR (ViT/DeiT encoder + TrOCR causal-LM decoder) split into two export modules.

Parameter names follow Hugging Face ``VisionEncoderDecoderModel`` (``encoder.*``,
``enc_to_dec_proj.*``, ``decoder.*``), so a full TrOCR checkpoint loads into either half after
``adapt_state_dict`` keeps the keys that half owns.

Both classes take the same kwargs: ``encoder_config`` and ``decoder_config`` are the
``encoder``/``decoder`` dicts of the VisionEncoderDecoder ``config.json`` (each with a
``model_type``), so one ``hf_config_to_kwargs`` serves both engines.

The decoder runs the full target sequence every step (no past-key-value cache): each step's
logits are exactly those of the uncached model, at the cost of recomputing earlier positions.
"""
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

DEFAULT_ATTENTION = "eager"  # exports to plain MatMul/Softmax; SDPA adds nothing on TensorRT


def _hf_config(config: dict):
    config = dict(config)
    model_type = config.pop("model_type", None)
    if model_type is None:
        raise ValueError("encoder_config/decoder_config need a 'model_type' (e.g. 'vit', 'deit', 'trocr')")
    return AutoConfig.for_model(model_type, **config)


def _needs_projection(encoder_cfg, decoder_cfg) -> bool:
    # Same rule as VisionEncoderDecoderModel.__init__.
    return (
        encoder_cfg.hidden_size != decoder_cfg.hidden_size
        and getattr(decoder_cfg, "cross_attention_hidden_size", None) is None
    )


def _keep_prefixes(state_dict: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in state_dict.items() if k.startswith(prefixes)}


class _TrOCRHalf(nn.Module):
    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        if "encoder" not in hf_config or "decoder" not in hf_config:
            return {}
        return {"encoder_config": hf_config["encoder"], "decoder_config": hf_config["decoder"]}


class TrOCREncoder(_TrOCRHalf):
    """pixel_values [B, 3, H, W] -> encoder_hidden_states [B, S, decoder hidden] (projected if needed)."""

    def __init__(self, encoder_config: dict, decoder_config: dict, attn_implementation: str = DEFAULT_ATTENTION):
        super().__init__()
        enc_cfg, dec_cfg = _hf_config(encoder_config), _hf_config(decoder_config)
        self.encoder = AutoModel.from_config(enc_cfg, attn_implementation=attn_implementation)
        if _needs_projection(enc_cfg, dec_cfg):
            self.enc_to_dec_proj = nn.Linear(enc_cfg.hidden_size, dec_cfg.hidden_size)
        else:
            self.enc_to_dec_proj = None

    def adapt_state_dict(self, state_dict: dict) -> dict:
        if not any(k.startswith("encoder.") for k in state_dict):
            return state_dict
        return _keep_prefixes(state_dict, ("encoder.", "enc_to_dec_proj."))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(pixel_values=pixel_values, return_dict=True).last_hidden_state
        if self.enc_to_dec_proj is not None:
            hidden = self.enc_to_dec_proj(hidden)
        return hidden


class TrOCRDecoder(_TrOCRHalf):
    """decoder_input_ids [B, T] int64 + encoder_hidden_states [B, S, D] -> logits [B, T, vocab].

    With ``last_token_logits=True`` the output is [B, 1, vocab]: only the position greedy decoding
    reads, which skips T-1 rows of the vocabulary projection and of the transfer per step.
    """

    def __init__(self, encoder_config: dict, decoder_config: dict, attn_implementation: str = DEFAULT_ATTENTION,
                 last_token_logits: bool = False):
        super().__init__()
        self.last_token_logits = last_token_logits
        dec_cfg = _hf_config(decoder_config)
        # VisionEncoderDecoderModel forces these; they change nothing in the weights we load.
        dec_cfg.is_decoder = True
        dec_cfg.add_cross_attention = True
        self.decoder = AutoModelForCausalLM.from_config(dec_cfg, attn_implementation=attn_implementation)

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        """Token ids < the decoder's vocab_size, one logit per token, learned positions up to
        max_position_embeddings."""
        decoder = kwargs.get("decoder_config") or {}
        vocab = decoder.get("vocab_size")
        learned = decoder.get("use_learned_position_embeddings", True)
        return {"value_ranges": [[0, vocab] if vocab else None, None],
                "max_sequence_length": decoder.get("max_position_embeddings") if learned else None,
                "output_widths": [vocab]}

    def adapt_state_dict(self, state_dict: dict) -> dict:
        if not any(k.startswith("decoder.") for k in state_dict):
            return state_dict
        return _keep_prefixes(state_dict, ("decoder.",))

    def forward(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder.model.decoder(
            input_ids=decoder_input_ids,
            encoder_hidden_states=encoder_hidden_states,
            use_cache=False,
            return_dict=True,
        ).last_hidden_state
        if self.last_token_logits:
            hidden = hidden[:, -1:, :]
        return self.decoder.output_projection(hidden)
