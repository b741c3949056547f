"""Tests for pcm_plugin.data_prep.sharding."""

import pytest


def test_dist_env_defaults_and_errors(monkeypatch):
    from pcm_plugin.data_prep.sharding import dist_env
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv('RANK', '3')
    monkeypatch.setenv('WORLD_SIZE', '4')
    assert dist_env() == (3, 4, 3)
    monkeypatch.setenv('RANK', '4')
    with pytest.raises(ValueError, match='RANK=4 is outside WORLD_SIZE=4'):
        dist_env()


def test_ranks_partition_the_units():
    from pcm_plugin.data_prep.sharding import owned_by_rank
    parts = [owned_by_rank(7, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert owned_by_rank(7, 0, 1) == list(range(7))


def test_single_process_helpers_are_identities():
    from pcm_plugin.data_prep.sharding import (
        barrier,
        process_group,
        sum_across_ranks,
    )
    with process_group(1):
        barrier()
        assert sum_across_ranks([1, 2.5]) == [1, 2.5]
