"""MLPerf Storage parameters and overrides."""

import pytest

from exastor.tools.scaletest import workloads


def test_published_mlperf_parameters():
    unet = workloads.training_workload("unet3d", "h100")
    assert (unet.record_length, unet.batch_size, unet.read_threads, unet.au_threshold) == (146_600_628, 7, 4, 0.90)
    assert unet.compute_time == 0.323
    assert workloads.training_workload("unet3d", "a100").compute_time == 0.636
    resnet = workloads.training_workload("resnet50", "h100")
    assert (resnet.batch_size, resnet.samples_per_file, resnet.read_threads) == (400, 1251, 8)
    assert resnet.compute_time == 0.224 and resnet.read_pattern == workloads.READ_RANGED
    cosmo = workloads.training_workload("cosmoflow", "a100")
    assert cosmo.au_threshold == 0.70 and cosmo.compute_time == 0.00551


def test_bandwidth_one_h100_needs_for_unet3d():
    # 7 samples x 146.6 MB every 0.323 s: ~3.18 GB/s per H100 (MLPerf's well-known figure)
    unet = workloads.training_workload("unet3d", "h100")
    assert unet.bytes_per_second_needed == pytest.approx(7 * 146_600_628 / 0.323)
    assert 3.1e9 < unet.bytes_per_second_needed < 3.2e9


def test_overrides_replace_only_given_values():
    base = workloads.training_workload("resnet50", "a100")
    small = base.with_overrides(record_length=1000, batch_size=None, compute_time=0.01)
    assert small.record_length == 1000 and small.compute_time == 0.01
    assert small.batch_size == base.batch_size
    with pytest.raises(ValueError):
        base.with_overrides(batch_size=0)
    with pytest.raises(ValueError):
        base.with_overrides(au_threshold=1.5)
    with pytest.raises(ValueError):
        base.with_overrides(colour="blue")


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError):
        workloads.training_workload("bert", "h100")
    with pytest.raises(ValueError):
        workloads.training_workload("unet3d", "v100")


def test_checkpoint_shapes():
    llama8 = workloads.CHECKPOINT_MODELS["llama3-8b"]
    # 14 bytes/parameter: fp16 weights + fp32 Adam (master, m, v)
    assert llama8.total_bytes == 8_030_000_000 * 14
    assert llama8.ranks == 8 and workloads.CHECKPOINT_MODELS["llama3-70b"].ranks == 64


@pytest.mark.parametrize("total,ranks", [(10, 3), (100, 10), (7, 8), (2**40 + 5, 64)])
def test_shard_sizes_cover_the_checkpoint(total, ranks):
    sizes = workloads.shard_sizes(total, ranks)
    assert len(sizes) == ranks and sum(sizes) == total
    assert max(sizes) - min(sizes) <= 1
