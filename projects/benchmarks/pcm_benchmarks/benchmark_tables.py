"""The markdown tables ``projects/benchmarks/tools/benchmark.py`` prints,
one function per part of its report (each returns the text; the tool
prints it)."""
from typing import Dict, List

DECODING_HEADER = ('| measurement | median | IQR | note |\n'
                   '| --- | --- | --- | --- |')


def decoding_rows(d: Dict, title: str) -> List[str]:
    """One decoding comparison (``decoding_bench.decoding``) as table rows."""
    names = ('ours_beam3', 'hf_bart_beam3', 'hf_bart_beam3_visible',
             'greedy_cache', 'greedy_no_cache')
    rows = []
    for name in (n for n in names if n in d):
        x = d[name]
        rows.append(f"| {title}: {name} | {x['median_s'] * 1e3:.0f} ms | "
                    f"{x['iqr_s'] * 1e3:.0f} ms | {x['captions_per_s']:.0f} "
                    f"captions/s, CPU {x['cpu_median_s'] * 1e3:.0f} ms |")
    rows.append(f"| {title}: beam-3 speed-up over HF BART | "
                f"{d['beam_speedup_over_hf_bart']:.2f}x | | CPU time "
                f"{d['beam_speedup_over_hf_bart_cpu']:.2f}x; steps: ours "
                f"{d['steps']}, BART {d['bart_steps']} |")
    rows.append(f"| {title}: cache speed-up (greedy) | "
                f"{d['cache_speedup']:.2f}x | | CPU time "
                f"{d['cache_speedup_cpu']:.2f}x |")
    return rows


def decoding_table(r: Dict) -> str:
    """The decoding rows (``report['decoding']`` and
    ``report['decoding_trained']``) as markdown table rows."""
    d = r['decoding']
    rows = decoding_rows(d, 'random weights')
    for name, x in d['encoder'].items():
        rows.append(f"| encoder, test layout, {name} | "
                    f"{x['median_s'] * 1e3:.0f} ms | "
                    f"{x['iqr_s'] * 1e3:.0f} ms | CPU "
                    f"{x['cpu_median_s'] * 1e3:.0f} ms |")
    trained = r['decoding_trained']
    if 'skipped' in trained:
        rows.append(f"| trained run | skipped | | {trained['skipped']} |")
    else:
        rows += decoding_rows(trained, 'trained')
    return '\n'.join(rows)


def variants_table(v: Dict) -> str:
    """Training step and beam 3 of each attention/precision/compile
    variant, relative to eager float32 (``report['variants']``)."""
    rows = [f"\n{v['device']}, compile backend {v['compile_backend']}"
            + (f"; compile failed: {v['compile_error']}"
               if 'compile_error' in v else ''),
            '| variant | train step | IQR | vs eager-fp32 | beam 3 | IQR | '
            'vs eager-fp32 | first call (compiling) |\n'
            '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, t in v['train_step'].items():
        b = v['beam3'].get(name)
        beam = (f"{b['median_s'] * 1e3:.0f} ms | {b['iqr_s'] * 1e3:.0f} ms | "
                f"{b['over_eager_fp32']:.2f}x" if b else '– | – | –')
        first = ' / '.join(f"{x['first_call_s']:.1f} s" for x in (t, b)
                           if x and 'first_call_s' in x)
        rows.append(f"| {name} | {t['median_s'] * 1e3:.0f} ms | "
                    f"{t['iqr_s'] * 1e3:.0f} ms | "
                    f"{t['over_eager_fp32']:.2f}x | {beam} | {first} |")
    return '\n'.join(rows) + '\n'


def evaluation_table(e: Dict) -> str:
    """The "evaluation" rows (``report['evaluation']``) as a table."""
    if 'skipped' in e:
        return f"\nevaluation skipped: {e['skipped']}\n"
    rows = [f"\nevaluation: {e['images']} images, {e['references']} "
            f"references, {'/'.join(e['scorers'])}; predictions: "
            f"{e['predictions']}; scores identical: {e['identical']}",
            '| evaluation | median | IQR | CPU, JVMs included |\n'
            '| --- | --- | --- | --- |']
    for name, label in (('pycocoevalcap', 'bare pycocoevalcap scorers'),
                        ('metric', 'COCOCaptionMetric')):
        x = e['times'][name]
        rows.append(f"| {label} | {x['median_s']:.2f} s | "
                    f"{x['iqr_s']:.2f} s | {x['cpu_s']:.1f} s |")
    ratio = e['metric_over_pycocoevalcap']
    rows.append(f"| metric / bare | {ratio['wall']:.2f}x | | "
                f"{ratio['cpu']:.2f}x |\n")
    return '\n'.join(rows)


def startup_table(s: Dict) -> str:
    """The start-up rows (``report['startup']``) as a markdown table."""
    imports, helps = s['imports'], s['help']
    rows = ['| start-up (fresh process) | median | IQR | note |\n'
            '| --- | --- | --- | --- |']
    for name in ('mmpretrain', 'pcm_plugin'):
        x = imports[name]
        rows.append(f"| import {name} | {x['median_s'] * 1e3:.0f} ms | "
                    f"{x['iqr_s'] * 1e3:.0f} ms | |")
    rows.append(f"| pcm_plugin / mmpretrain | "
                f"{imports['pcm_plugin_over_mmpretrain']:.3f}x | | |")
    rows.append(f"| --help, slowest tool | {helps['max_s'] * 1e3:.0f} ms | | "
                f"{helps['slowest']} |")
    for tool, x in helps['tools'].items():
        rows.append(f"| {tool} --help | {x['median_s'] * 1e3:.0f} ms | "
                    f"{x['iqr_s'] * 1e3:.0f} ms | |")
    return '\n'.join(rows)


def report_text(r: Dict) -> str:
    """Every table of a report, for the parts it holds."""
    from projects.benchmarks.pcm_benchmarks.data_speed import format_tables
    from projects.benchmarks.pcm_benchmarks.training_step import format_table
    head = (f"threads {r['threads']}, load {r['load_before']:.2f} -> "
            f"{r['load_after']:.2f}")
    if 'matmul_flops_per_s' in r:
        head += f"; matmul {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"
    text = [head]
    if 'train_step' in r:
        text.append(format_table(r['train_step']))
    if 'decoding' in r:
        text += [DECODING_HEADER, decoding_table(r)]
    if 'variants' in r:
        text.append(variants_table(r['variants']))
    if 'data' in r:
        text += format_tables(r['data'])
    if 'evaluation' in r:
        text.append(evaluation_table(r['evaluation']))
    if 'startup' in r:
        text.append(startup_table(r['startup']))
    return '\n'.join(text)
