"""Parameters and CPU cost of the two hosts, side by side (issue 28).

PCMCaptioner and PrefixLMCaptioner, each without (Base) and with PCM + the
CLIP-weighted loss (full), built from the mini world's configs on a
prepared world; one real training batch each, the same for all four. One
thread; the four training steps (forward, backward, Adam) and the four
beam-search decodes run in alternation after warm-up (median and IQR).

    OMP_NUM_THREADS=1 python docs/results/prefix_host_cost.py \
        --root data/mini_world_weak_n24k \
        --out docs/results/prefix_host_cost.json
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
import tools._cli  # noqa: E402,F401  the tools' start-up

VARIANTS = ('base', 'full', 'prefix_base', 'prefix_full')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', required=True, help='a prepared world')
    parser.add_argument('--rate', type=float, default=0.6)
    parser.add_argument('--reps', type=int, default=15)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()

    import torch
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    import pcm_plugin  # noqa: F401  registers the components
    from pcm_plugin.registry import MODELS
    from projects.benchmarks.pcm_benchmarks.perf import timed_interleaved
    from projects.mini_world.pcm_mini_world.ablation import variant_config
    from projects.mini_world.pcm_mini_world.world import load_world

    torch.set_num_threads(1)
    DefaultScope.get_instance('prefix_host_cost', scope_name='mmpretrain')
    world = load_world(args.root)
    steps, decodes, params = {}, {}, {}
    batch = None
    for variant in VARIANTS:
        cfg = variant_config(osp.join(REPO, 'projects/mini_world/configs'),
                             world, variant, rate=args.rate, seed=0,
                             work_root='/tmp/prefix_host_cost')
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        if batch is None:  # the same captions and features for all four
            loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
            batch = next(iter(loader))
        data = model.data_preprocessor(batch, True)
        params[variant] = dict(
            total=sum(p.numel() for p in model.parameters()),
            trainable=sum(p.numel() for p in model.parameters()
                          if p.requires_grad))
        optimizer = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model=model, data=data, optimizer=optimizer):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            losses = model(data['inputs'], data['data_samples'], mode='loss')
            sum(v for k, v in losses.items() if k.startswith('loss')
                ).backward()
            optimizer.step()

        def decode(model=model, data=data):
            model.eval()
            with torch.no_grad():
                model(data['inputs'], data['data_samples'], mode='predict')
        steps[variant], decodes[variant] = step, decode
    report = dict(
        world=args.root, rate=args.rate, threads=1,
        batch_size=len(batch['data_samples']), params=params,
        train_step=timed_interleaved(steps, reps=args.reps, cpu=True),
        beam_decode=timed_interleaved(decodes, reps=args.reps, cpu=True))
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
