"""The Hugging Face Trainer callback: same exponent as the monitor, training left bit-identical."""
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from netdyn.integrations.huggingface import LyapunovTrainerCallback  # noqa: E402

STEPS = 12


class TokenData(torch.utils.data.Dataset):
    """Random token sequences with a label that depends on the first token: learnable, fixed by seed."""

    def __init__(self, n: int = 64, length: int = 8, vocab: int = 40):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, length), generator=gen)
        self.labels = (self.ids[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def tiny_bert() -> torch.nn.Module:
    """A randomly initialised 1-layer BERT classifier built from a config (no download), with dropout."""
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).double()


def train(tmp_path, callbacks, **overrides):
    args = dict(output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=1e-3,
                logging_steps=4, report_to=[], use_cpu=True, save_strategy="no", seed=0, data_seed=0,
                dataloader_num_workers=0, disable_tqdm=True)
    args.update(overrides)
    model = tiny_bert()
    trainer = transformers.Trainer(model=model, args=transformers.TrainingArguments(**args), train_dataset=TokenData(),
                                   callbacks=callbacks)
    trainer.train()
    return trainer, model


class TestLyapunovTrainerCallback:
    def test_training_is_bit_identical_and_the_exponent_is_logged(self, tmp_path):
        _, plain = train(tmp_path / "a", [])
        callback = LyapunovTrainerCallback()
        trainer, monitored = train(tmp_path / "b", [callback])
        for p, q in zip(plain.parameters(), monitored.parameters()):
            assert torch.equal(p, q)
        logged = [entry for entry in trainer.state.log_history if "lyapunov" in entry and "loss" in entry]
        assert [entry["step"] for entry in logged] == [4, 8, 12]
        result = callback.monitor.result()
        assert result.sizes["step"] == STEPS and not bool(result.unresolved)
        assert logged[-1]["lyapunov"] == pytest.approx(float(result.lyapunov))
        # the shadow sees the user's dropout masks and clipping: a sensitivity, not mask noise
        # (different masks separate the twins by ~lr at once: ln(1e-3 / d0) ~ 10 per step)
        assert math.isfinite(logged[-1]["lyapunov"]) and abs(logged[-1]["lyapunov"]) < 0.5

    def test_preconditioned_sharpness_is_logged_against_adams_threshold(self, tmp_path):
        callback = LyapunovTrainerCallback(sharpness_every=4)
        trainer, _ = train(tmp_path, [callback])  # the Trainer's default optimiser is AdamW
        logged = [entry for entry in trainer.state.log_history if "sharpness" in entry and "loss" in entry]
        assert len(logged) == 3 and all(np.isfinite(entry["sharpness"]) and entry["sharpness"] > 0 for entry in logged)
        # AdamW, beta1 = 0.9: (2 + 2 beta1) / ((1 - beta1) lr) at the rate of the step measured (steps 1, 5, 9 of a
        # linear decay from 1e-3 to 0 over 12 steps)
        steps, _, thresholds = zip(*callback.monitor.sharpness_history)
        assert list(steps) == [1, 5, 9]
        np.testing.assert_allclose(thresholds, [38 / (1e-3 * (1 - (s - 1) / STEPS)) for s in steps], rtol=1e-9)

    def test_refuses_gradient_accumulation(self, tmp_path):
        with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
            train(tmp_path, [LyapunovTrainerCallback()], gradient_accumulation_steps=2)
