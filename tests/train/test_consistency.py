"""The flip-consistency term of ``synapseg adapt``'s trainer."""

from __future__ import annotations

import torch

from synapseg.model.unet import UNetConfig, build_unet
from synapseg.train.consistency import ConsistencyTrainer
from synapseg.train.data import load_data_config, prepare_item
from synapseg.train.trainer import TrainConfig, Trainer

from .conftest import VOXEL_NM

VS3 = (VOXEL_NM,) * 3


def _step(cls, toy_data, tmp_path, **kw) -> dict:
    torch.set_num_threads(1)
    vols = [prepare_item(it, VS3) for it in load_data_config(toy_data)]
    net = build_unet(UNetConfig(base_channels=4, depth=2), seed=0)
    config = TrainConfig(steps=1, patch_size=(16, 32, 32), batch_size=2, seed=3, val_every=1000)
    return cls(net, config, vols[:2], [], VS3, tmp_path, **kw).train_step()


def test_consistency_term_is_added_and_logged(toy_data, tmp_path):
    plain = _step(Trainer, toy_data, tmp_path / "a")
    with_term = _step(ConsistencyTrainer, toy_data, tmp_path / "b", consistency_weight=1.0)
    off = _step(ConsistencyTrainer, toy_data, tmp_path / "c", consistency_weight=0.0)
    assert "consistency" not in plain and "consistency" not in off
    assert with_term["consistency"] > 0
    # same batch (the flip is drawn after it): the loss grows by exactly the weighted term
    assert abs(with_term["loss"] - plain["loss"] - with_term["consistency"]) < 1e-5
    assert abs(off["loss"] - plain["loss"]) < 1e-6


def _bn_state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items() if "running_" in k}


def test_frozen_batch_norm_keeps_the_base_statistics(toy_data, tmp_path):
    torch.set_num_threads(1)
    vols = [prepare_item(it, VS3) for it in load_data_config(toy_data)]
    config = TrainConfig(steps=1, patch_size=(16, 32, 32), batch_size=2, seed=3, val_every=1000)
    moved = {}
    for frozen in (True, False):
        net = build_unet(UNetConfig(base_channels=4, depth=2, norm="batch"), seed=0)
        before = _bn_state(net)
        assert before, "the test network must have batch-norm layers"
        weights = {k: v.detach().clone() for k, v in net.named_parameters()}
        trainer = ConsistencyTrainer(
            net, config, vols[:2], [], VS3, tmp_path / str(frozen), freeze_batch_norm=frozen
        )
        trainer.train_step()
        after = _bn_state(net)
        moved[frozen] = any(not torch.equal(before[k], after[k]) for k in before)
        # the weights learn either way (the affine batch-norm parameters included)
        assert any(not torch.equal(weights[k], p) for k, p in net.named_parameters())
    assert moved == {True: False, False: True}
