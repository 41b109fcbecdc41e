"""Regenerate serving/tiny-model: a Llama config and a byte-level BPE tokenizer, a few KB.

vLLM serves it with ``--load-format dummy`` (random weights), which is all the local
target and the tests need: real engine, real API, real metrics, no download.
Run: python serving/make_tiny_model.py
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).parent / "tiny-model"
CORPUS = [
    "Triptyque deploys one inference service to edge, on-prem and cloud targets.",
    "The gateway checks API keys, counts tokens and stops serving when the kill switch is engaged.",
    "Prometheus scrapes the gateway and the engine; alerts fire when the service level is at risk.",
    "Hello, how are you today? I am a tiny model with random weights.",
    "Measure deploy time, recovery time, toil, total cost of ownership and exit cost.",
]
SPECIAL = ["<s>", "</s>", "<unk>"]
VOCAB = 330


def main() -> None:
    HERE.mkdir(exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.save(str(HERE / "tokenizer.json"))
    vocab_size = tokenizer.get_vocab_size()
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 64,
        "vocab_size": vocab_size, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
        "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    chat_template = (
        "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}</s>"
        "{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": 512, "chat_template": chat_template,
    }
    (HERE / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (HERE / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": 1}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
