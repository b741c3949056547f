"""Choosing the CLIP re-ranker's weight on val: the grid on hand-built
numbers, each candidate's CIDEr against the caption metric's, the guard
against test files, and the tool end to end (its choice tested with
tools/test.py gives the CIDEr it reported)."""
import json
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config

from pcm_plugin.apis import rerank_weight
from pcm_plugin.evaluation.caption_metric import score_captions


def hand_built():
    """Two images, two candidates each, on the numbers of
    tests/test_models/test_clip_reranker.py: per token (a = 1) image 1's
    pick flips to its second candidate above w = 0.5 and image 2's
    above w = 0.8 (mean log-probs -0.5 / -1.5, cosines 0 / 0.25; equal at
    (1 - w) = 0.25 w). CIDEr rewards the flip of image 1 only."""
    candidates = dict(
        image_ids=[1, 2],
        captions=[['a', 'b'], ['c', 'd']],
        log_probs=torch.tensor([[-2.0, -3.0], [-1.0, -3.0]]),
        lengths=torch.tensor([[4, 3], [2, 2]]),
        cosines=torch.tensor([[0.0, 0.5], [0.0, 0.25]]))
    cider = np.array([[0.25, 1.0], [0.5, 0.0]])
    return candidates, cider


def test_grid_picks_the_weight_between_the_two_flips():
    candidates, cider = hand_built()
    grid = rerank_weight.fusion_grid(candidates, cider,
                                     length_penalties=(1.0, ))
    assert [row['weight'] for row in grid] == [i / 20 for i in range(21)]
    by_weight = {row['weight']: row for row in grid}
    # w <= 0.5 (a tie at 0.5 keeps the first beam): both first beams.
    assert by_weight[0.5]['CIDEr'] == (0.25 + 0.5) / 2 * 100
    assert by_weight[0.55]['CIDEr'] == (1.0 + 0.5) / 2 * 100
    assert by_weight[0.55]['changed'] == 0.5
    assert by_weight[0.55]['mean_cos'] == 0.25
    assert by_weight[0.85]['CIDEr'] == (1.0 + 0.0) / 2 * 100
    best = rerank_weight.best_row(grid)
    # 0.55 ... 0.8 tie at 75: the smallest w wins.
    assert (best['weight'], best['CIDEr']) == (0.55, 75.0)


def test_length_penalty_is_searched_and_ties_keep_the_first_listed():
    candidates, cider = hand_built()
    grid = rerank_weight.fusion_grid(candidates, cider,
                                     weights=(0.0, 0.6, 0.7),
                                     length_penalties=(0.0, 1.0))
    assert [(r['length_penalty'], r['weight']) for r in grid] == [
        (0.0, 0.0), (0.0, 0.6), (0.0, 0.7), (1.0, 0.0), (1.0, 0.6),
        (1.0, 0.7)]
    # Summed (a = 0), image 1 flips above w = 2/3: at 0.7 it has too.
    assert [r['CIDEr'] for r in grid] == [37.5, 37.5, 75.0, 37.5, 75.0,
                                          75.0]
    assert rerank_weight.best_row(grid)['length_penalty'] == 0.0
    with pytest.raises(ValueError, match='weight=2'):
        rerank_weight.fusion_grid(candidates, cider, weights=(2, ))


def test_candidate_cider_is_the_caption_metrics():
    """Each point's CIDEr (the mean of its picks' per-image CIDEr) is the
    caption metric's CIDEr of the picked captions, to the bit."""
    references = {1: ['a red circle on grass', 'a circle that is red'],
                  2: ['two blue squares', 'blue squares side by side'],
                  3: ['a green triangle', 'one green triangle alone']}
    captions = [['a red circle', 'a blue circle'],
                ['blue squares', 'two squares'],
                ['a triangle', 'a green triangle on grass']]
    cider = rerank_weight.candidate_cider([1, 2, 3], captions, references)
    assert cider.shape == (3, 2)
    for pick in ([0, 0, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1]):
        metric = score_captions(
            {i: caps[k] for i, caps, k in zip((1, 2, 3), captions, pick)},
            references, ('cider', ))['CIDEr']
        assert float(np.mean(cider[np.arange(3), pick])) * 100 == metric


def test_test_files_are_refused(checkpoint, tmp_path):
    config, _, _ = checkpoint
    cfg = Config.fromfile(config)  # its val split is the toy test split
    with pytest.raises(ValueError, match='never on test'):
        rerank_weight.val_split(cfg)
    cfg.val_dataloader = cfg.val_evaluator = None
    with pytest.raises(ValueError, match='--val-ann'):
        rerank_weight.val_split(cfg)
    with pytest.raises(ValueError, match='never on test'):
        rerank_weight.val_split(
            cfg, val_ann=str(tmp_path / 'val.json'),
            val_features=str(tmp_path / 'val'),
            val_gt=cfg.test_evaluator.ann_file)


def test_tool_chooses_on_val_and_test_py_reproduces_it(
        checkpoint, toy_world, tmp_path, tool_in_process):
    """A val split with the toy test split's content at other paths: the
    tool's val CIDEr at its choice is what tools/test.py measures with
    the options it printed; every grid row is the CIDEr of a model with
    that weight."""
    config, ckpt, _ = checkpoint
    val = dict(ann=str(tmp_path / 'val.json'), gt=str(tmp_path / 'gt.json'),
               features=str(tmp_path / 'val_features'))
    shutil.copy(toy_world['test_ann'], val['ann'])
    shutil.copy(toy_world['test_gt'], val['gt'])
    shutil.copytree(toy_world['test_feats'], val['features'])
    out = str(tmp_path / 'choice.json')
    run = tool_in_process('tools/choose_rerank_weight.py', [
        config, ckpt, '--val-ann', val['ann'], '--val-features',
        val['features'], '--val-gt', val['gt'], '--num-candidates', '4',
        '--weights', '0', '0.5', '1', '--out', out])
    with open(out) as f:
        choice = json.load(f)
    assert len(choice['grid']) == 6 and choice['num_candidates'] == 4
    assert f'test with: python tools/test.py {config} {ckpt} --cfg-options' \
        in run.stdout
    assert choice['reranker']['weight'] == choice['weight']
    assert any(row['changed'] > 0 for row in choice['grid'])
    metrics = str(tmp_path / 'metrics.json')
    tool_in_process('tools/test.py', [
        config, ckpt, '--out', metrics, '--work-dir', tmp_path / 'test',
        '--cfg-options', *choice['cfg_options']])
    with open(metrics) as f:
        assert json.load(f)['CIDEr'] == choice['CIDEr']


def test_tool_chooses_on_a_reranking_release_of_either_form(
        checkpoint, toy_world, tmp_path, tool_in_process):
    """Released re-ranking (weight 0.25, CLIP carried), the same model
    gets the same grid as from its config and checkpoint; the options
    printed change only what differs from the release's own re-ranker,
    and tools/test.py on the release with them measures the chosen CIDEr
    (a one-file release's re-ranker holds its CLIP as a dict)."""
    from pcm_plugin.apis import publish_model
    config, ckpt, _ = checkpoint
    val = ['--val-ann', str(tmp_path / 'val.json'),
           '--val-features', str(tmp_path / 'val_features'),
           '--val-gt', str(tmp_path / 'gt.json')]
    shutil.copy(toy_world['test_ann'], val[1])  # test's content elsewhere
    shutil.copytree(toy_world['test_feats'], val[3])
    shutil.copy(toy_world['test_gt'], val[5])
    grid = ['--num-candidates', '4', '--weights', '0', '0.5', '1']

    def choose(*model):
        out = str(tmp_path / 'choice.json')
        run = tool_in_process('tools/choose_rerank_weight.py',
                              [*model, *val, *grid, '--out', out])
        with open(out) as f:
            return json.load(f), run.stdout

    reference, _ = choose(config, ckpt)
    cfg = Config.fromfile(config)
    cfg.model.reranker = dict(reference['reranker'], weight=0.25)
    reranking = str(tmp_path / 'reranking.py')
    cfg.dump(reranking)
    for form in ('pcm-rr', 'pcm-rr.safetensors'):
        release = str(tmp_path / form)
        publish_model(reranking, ckpt, release, with_clip=True)
        choice, stdout = choose(release)
        assert choice['grid'] == reference['grid']
        assert choice['cfg_options'] == [
            f'model.reranker.weight={reference["weight"]}'] + ([
                f'model.reranker.length_penalty='
                f'{reference["length_penalty"]}']
                if reference['length_penalty'] != 1.0 else [])
        assert f'test with: python tools/test.py {release} --cfg-options ' \
            f'{choice["cfg_options"][0]}' in stdout
        metrics = str(tmp_path / f'{form}.json')
        tool_in_process('tools/test.py', [
            release, '--out', metrics, '--work-dir', tmp_path / f'work_{form}',
            '--cfg-options', *choice['cfg_options']])
        with open(metrics) as f:
            assert json.load(f)['CIDEr'] == reference['CIDEr']


def test_a_one_file_release_without_its_reranker_says_what_to_do(
        checkpoint, tmp_path):
    from pcm_plugin.apis import publish_model, resolve_release
    config, ckpt, _ = checkpoint
    release = str(tmp_path / 'plain.safetensors')
    publish_model(config, ckpt, release, with_clip=True)
    with pytest.raises(ValueError, match='carries no CLIP text tower'):
        rerank_weight.reranker_config(resolve_release(release)[0])
