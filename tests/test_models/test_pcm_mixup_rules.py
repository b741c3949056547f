"""PCMMixup's selection options (``selection``, ``excluded_words``): the
default is the module as it was, and a rule reaches both token layouts."""
import pytest
import torch

import pcm_plugin.models.pcm_mixup as pcm_mixup_module
from pcm_plugin.models import salient_patch_mixup
from pcm_plugin.models.pcm_mixup import COCO_STUFF_WORDS, read_word_list
from pcm_plugin.registry import MODELS
from pcm_plugin.visualization import mixup_pairs
from tests.test_models.mixup_checks import (
    official_before,
    tiny_features,
    tiny_mixup_cfg,
)

# The two words the 12-word tiny bank retrieves most often for features()
# at top_k=3 (concept10 in 3 images of 4, concept7 in 2): excluding them
# leaves the images 1 to 3 writable concepts (test_rule_reaches_both_layouts
# checks they are retrieved).
EXCLUDED = ['concept10', 'concept7']


@pytest.fixture
def mixup_cfg(tiny_clip, tiny_bank):
    # With CapDec noise: the default-output test covers the global token.
    return tiny_mixup_cfg(tiny_clip, tiny_bank, noise_var=0.016)


def features():
    return tiny_features(batch=4)


def run(module, training, seed=1):
    """One forward pass with a fixed CapDec noise draw."""
    module.train(training)
    torch.manual_seed(seed)
    return module(*features())


@pytest.mark.parametrize('training', [True, False])
def test_default_output_is_the_module_as_it_was(mixup_cfg, monkeypatch,
                                                training):
    torch.manual_seed(0)
    module = MODELS.build(mixup_cfg)
    now = run(module, training)

    def before(patch_proj, global_feat, concept_embeds, *, selection,
               writable, **settings):
        assert selection == 'official' and writable is None
        return official_before(patch_proj, global_feat, concept_embeds,
                               **settings)

    monkeypatch.setattr(pcm_mixup_module, 'salient_patch_mixup', before)
    was = run(module, training)
    assert now.keys() == was.keys()
    for key in now:
        assert torch.equal(now[key], was[key]), key


def test_options_add_no_weights_and_keep_the_pairing(mixup_cfg):
    """Same seed: the same initial weights and the same checkpoint keys
    under every rule, so a rule's cell pairs with the official one."""
    torch.manual_seed(5)
    official = MODELS.build(mixup_cfg).state_dict()
    after_official = torch.rand(1)
    torch.manual_seed(5)
    ours = MODELS.build(dict(mixup_cfg, selection='per_concept',
                             excluded_words=EXCLUDED)).state_dict()
    assert torch.equal(torch.rand(1), after_official)
    assert official.keys() == ours.keys()
    for name, value in official.items():
        assert torch.equal(value, ours[name]), name


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('selection', ['official', 'per_concept'])
def test_rule_reaches_both_layouts(mixup_cfg, training, selection):
    module = MODELS.build(dict(mixup_cfg, selection=selection,
                               excluded_words=EXCLUDED))
    out = run(module, training)
    patches, global_feat = features()
    writable = torch.tensor([w not in EXCLUDED
                             for w in module.concept_words])
    textual, mask, concept_idx = salient_patch_mixup(
        module.clip_head(patches), global_feat, module.concept_embeds,
        top_k=3, top_m=5, selection=selection, writable=writable)
    assert torch.equal(out['replace_mask'], mask)
    assert torch.equal(out['concept_idx'], concept_idx)
    # The excluded words are retrieved (so the exclusion bites here) ...
    retrieved = {module.concept_words[i] for i in concept_idx.flatten()}
    assert set(EXCLUDED) <= retrieved
    if selection == 'per_concept':
        # ... and each writable retrieved concept has one patch.
        assert torch.equal(mask.sum(1), writable[concept_idx].sum(1))
    # The selected patches' tokens are their textual tokens, type 1: in
    # place of the patch in training, appended after the N patches at test.
    first = 1 if training else 50
    visible = out['token_mask'][:, first:first + 49]
    assert torch.equal(visible, torch.ones_like(mask) if training else mask)
    for b, j in mask.nonzero().tolist():
        want = module.norm(torch.relu(
            module.text_proj(textual[b, j]) + module.pos_embed[0, j + 1]
            + module.type_embed.weight[1]))
        torch.testing.assert_close(out['tokens'][b, first + j], want)


def test_excluded_words_from_files_and_the_package(mixup_cfg, tmp_path):
    listing = tmp_path / 'stuff.txt'
    listing.write_text('# background words\nconcept10\n\nconcept7  # sky\n')
    assert read_word_list(str(listing)) == ('concept10', 'concept7')
    from_file = MODELS.build(dict(mixup_cfg, excluded_words=str(listing)))
    assert from_file.concept_writable.tolist() == [
        i not in (10, 7) for i in range(12)]
    stuff = read_word_list(COCO_STUFF_WORDS)
    assert 'sky' in stuff and 'dog' not in stuff
    with pytest.raises(FileNotFoundError, match='pcm_plugin/resources'):
        read_word_list('no_such_list.txt')
    # A list with none of the bank's words is meant for another bank.
    with pytest.raises(ValueError, match='none of the'):
        MODELS.build(dict(mixup_cfg, excluded_words=COCO_STUFF_WORDS))


def test_swapped_bank_gets_its_own_writable_words(mixup_cfg):
    module = MODELS.build(dict(mixup_cfg, excluded_words=EXCLUDED))
    words = ['concept7'] + [f'other{i}' for i in range(4)]
    module.set_concept_bank((words, torch.eye(32)[:5].numpy()))
    assert module.concept_writable.tolist() == [False] + [True] * 4


def test_unknown_selection_is_refused_other_modes_ignore_it(mixup_cfg):
    with pytest.raises(ValueError, match='selection must be one of'):
        MODELS.build(dict(mixup_cfg, selection='per_patch'))
    # A per_concept checkpoint re-tested without its concept tokens (the
    # lab's probe and layout re-tests build it with mode='none').
    base = MODELS.build(dict(mixup_cfg, selection='per_concept',
                             mode='none')).eval()
    assert not base(*features())['replace_mask'].any()


def test_the_mixup_figure_shows_the_modules_own_pairs(mixup_cfg):
    module = MODELS.build(dict(mixup_cfg, selection='per_concept',
                               excluded_words=EXCLUDED)).eval()
    patches, global_feat = features()
    found = mixup_pairs(module, patches, global_feat)
    mask = module(patches, global_feat)['replace_mask']
    for b, image in enumerate(found):
        patches_of_pairs = [patch for patch, _ in image['pairs']]
        assert sorted(patches_of_pairs) == mask[b].nonzero()[:, 0].tolist()
        assert not {image['concepts'][slot] for _, slot in image['pairs']
                    } & set(EXCLUDED)


def test_coco_stuff_list_is_a_part_of_the_bank_in_its_order():
    from importlib import resources

    from pcm_plugin.models.concept_bank import default_concept_words
    text = resources.files('pcm_plugin').joinpath(
        'resources', COCO_STUFF_WORDS).read_text(encoding='utf-8')
    assert text.startswith('# Stuff: ')  # the rule, on the first line
    stuff = read_word_list(COCO_STUFF_WORDS)
    bank = default_concept_words()
    assert list(stuff) == [w for w in bank if w in set(stuff)]
    assert len(set(stuff)) == len(stuff)
    assert {'sky', 'grass', 'water', 'road', 'wall'} <= set(stuff)
    assert not {'dog', 'person', 'pizza', 'tree', 'table'} & set(stuff)
