"""Ablation bookkeeping: the summary table and the variant configs."""
from pcm_plugin.mini_world.ablation import VARIANTS, summarize


def test_summary_table_mean_std_per_cell():
    rows = [
        dict(variant='base', rate=0.3, seed=0, CIDEr=1.0, Bleu_4=0.30),
        dict(variant='base', rate=0.3, seed=1, CIDEr=1.2, Bleu_4=0.32),
        dict(variant='full', rate=0.3, seed=0, CIDEr=1.1, Bleu_4=0.31),
        dict(variant='real', rate=None, seed=0, CIDEr=1.5, Bleu_4=0.40),
    ]
    assert summarize(rows).splitlines() == [
        '| variant | CIDEr @ 0.3 | Bleu_4 @ 0.3 |',
        '| --- | --- | --- |',
        '| base | 110.0 ± 14.1 (n=2) | 31.0 ± 1.4 (n=2) |',
        '| full | 110.0 | 31.0 |',
        '| real | 150.0 | 40.0 |',
    ]


def test_variants_switch_the_two_components():
    assert VARIANTS['base'] == dict(mode='none', clip_weighted=False,
                                    focal='none')
    assert VARIANTS['full'] == dict(mode='top', clip_weighted=True,
                                    focal='batch')
    assert VARIANTS['pcm']['mode'] == 'top' and not VARIANTS['pcm'][
        'clip_weighted']
    assert VARIANTS['cxe']['mode'] == 'none' and VARIANTS['cxe'][
        'clip_weighted']
