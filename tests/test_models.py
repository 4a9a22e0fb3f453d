"""The many-to-one head: what it reads (last state, mean or max over time), padding ignored."""

from __future__ import annotations

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne
from rnnlab.tasks import get_task


def _model(pool: str, bidirectional: bool, cell: str = "lstm", vocab: int | None = None):
    torch.manual_seed(0)
    recurrent = {"hidden": 6, "cell": cell, "layers": 2, "bidirectional": bidirectional}
    return ManyToOne(5, 3, vocab_size=vocab, pool=pool, **recurrent).eval()


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_does_not_change_the_output(pool, bidirectional, cell):
    model = _model(pool, bidirectional, cell, vocab=20)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1])
    ids = torch.randint(1, 20, (4, 7), generator=g)  # past each length: junk, not padding
    with torch.no_grad():
        batch = model(ids, lengths)
        alone = torch.cat([model(ids[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batch, alone)


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_pooling_reads_every_step(pool):
    model = _model(pool, bidirectional=True)
    x = torch.randn(4, 9, 5)
    with torch.no_grad():
        outputs, _ = model.rnn(x)
        summary = outputs.mean(1) if pool == "mean" else outputs.amax(1)
        torch.testing.assert_close(model(x), model.head(summary))
        # Unlike the last state, the summary moves when only the first step changes.
        changed = x.clone()
        changed[:, 0] += 1.0
        assert not torch.allclose(model(x), model(changed))


def test_an_unknown_pool_is_an_error():
    with pytest.raises(ValueError, match="pool' must be"):
        _model("median", bidirectional=False)


def test_the_pool_is_a_config_key_of_the_many_to_one_tasks():
    for task in ("air-quality", "electric-devices", "sentiment"):
        cfg = get_task(task).config(None, ["model.pool='mean'", "model.head_dropout=0.2"])
        assert (cfg.model.pool, cfg.model.head_dropout) == ("mean", 0.2)
    with pytest.raises(RnnlabError, match=r"model\.pool"):
        get_task("electric-devices").config(None, ["model.pool='median'"])
    with pytest.raises(RnnlabError, match=r"model\.head_dropout"):
        get_task("air-quality").config(None, ["model.head_dropout=1.5"])
