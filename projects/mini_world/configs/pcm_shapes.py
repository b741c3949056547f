# PCM-Net on the embedded mini world (`make demo`,
# projects/mini_world/README.md): a smaller model (d=96, 2 encoder + 2
# decoder layers) on the mini CLIP's features (64x64 renders, 8x8 patches
# of width 64, 64-d embeddings), trained on synthetic renders with
# salient-object defects, evaluated on real renders. Built from the
# _base_ pieces (not from pcm_coco.py), so editing a COCO config never
# changes the demo or the ablation.
#
# The paths are the default world layout written by
# `python projects/mini_world/tools/prepare.py`, so `python tools/train.py
# projects/mini_world/configs/pcm_shapes.py` works once the world is
# prepared; projects/mini_world/tools/demo.py and
# projects/mini_world/tools/ablation.py re-point them at any prepared world.
# The ablation variants are pcm_shapes_{base,pcm,cxe,...}.py beside it.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../../../configs/_base_/models/pcm_net_vitb32.py',
    './_base_/datasets/mini_world.py',
    './_base_/schedules/mini_world.py',
]
custom_imports = dict(imports=['pcm_plugin'], allow_failed_imports=False)

# The world's files the model reads (mmengine cannot share a variable with
# a _base_ file; projects/mini_world/tests/test_prepare.py checks they agree).
world = 'data/mini_world'
clip_model = dict(
    name='pcm-mini-clip',
    checkpoint=world + '/clip/pcm-mini-clip.pt',
    model_config=world + '/clip/pcm-mini-clip.json')

# Width 96 instead of 128 and no attention dropout: the benchmark's cell
# must train to convergence in minutes on one core
# (docs/benchmarks/mini_world.md says how this was chosen).
model = dict(
    tokenizer=world + '/tokenizer/tokenizer.json',
    mixup=dict(
        concept_bank=world + '/concepts/concepts.npz',
        clip_head=clip_model['checkpoint'],
        patch_dim=64,
        global_dim=64,
        num_patches=64,
        embed_dim=96,
        top_k=5,
        top_m=5,
        dropout=0.3),
    encoder=dict(embed_dim=96, num_layers=2, num_heads=4, ffn_dim=384,
                 attn_drop=0.0, hidden_drop=0.1, ffn_drop=0.1),
    decoder=dict(embed_dim=96, num_layers=2, num_heads=4, ffn_dim=384,
                 attn_drop=0.0, hidden_drop=0.1, predictor_drop=0.3),
    loss=dict(alpha=2.5))

model_wrapper_cfg = dict(
    type='CPUCompatDDP', broadcast_buffers=False, find_unused_parameters=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='AtomicCheckpointHook', interval=6, save_best=None,
                    max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
# Random generator states in every checkpoint: --resume continues exactly.
custom_hooks = [dict(type='RNGStateHook')]
