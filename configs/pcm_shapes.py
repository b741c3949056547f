# PCM-Net on the embedded mini world (`make demo`): a smaller model (d=128,
# 2 encoder + 2 decoder layers) on the mini CLIP's features (64x64 renders,
# 8x8 patches of width 64, 64-d embeddings). Trained on synthetic renders
# with salient-object defects, evaluated on real renders.
#
# The paths below are the default world layout written by
# `python tools/mini_world/prepare.py`, so `python tools/train.py
# configs/pcm_shapes.py` works once the world is prepared; tools/demo.py and
# tools/mini_world/ablation.py re-point them at any prepared world
# (pcm_plugin.mini_world.demo.world_config). The ablation variants are
# configs/pcm_shapes_{base,pcm,cxe,...}.py.
_base_ = ['./pcm_coco.py']

world = 'data/mini_world'
ann_dir = world + '/corpus/annotations'
clip_model = dict(
    name='pcm-mini-clip',
    checkpoint=world + '/clip/pcm-mini-clip.pt',
    model_config=world + '/clip/pcm-mini-clip.json')

model = dict(
    tokenizer=world + '/tokenizer/tokenizer.json',
    max_len=20,
    mixup=dict(
        patch_dim=64,
        global_dim=64,
        num_patches=64,
        embed_dim=128,
        concept_bank=world + '/concepts/concepts.npz',
        clip_head=clip_model['checkpoint'],
        top_k=5,
        top_m=5,
        dropout=0.3),
    encoder=dict(embed_dim=128, num_layers=2, num_heads=4, ffn_dim=512,
                 attn_drop=0.1, hidden_drop=0.1, ffn_drop=0.1),
    decoder=dict(embed_dim=128, num_layers=2, num_heads=4, ffn_dim=512,
                 attn_drop=0.1, hidden_drop=0.1, predictor_drop=0.3),
    loss=dict(alpha=2.5))

# Train on synthetic renders with defect rate 0.3; val/test on real renders.
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=ann_dir + '/train.json',
                 feature_dir=world + '/features/synth_d030'))
val_dataloader = dict(
    batch_size=100, num_workers=0,
    dataset=dict(ann_file=ann_dir + '/val.json',
                 feature_dir=world + '/features/val'))
test_dataloader = dict(
    batch_size=100, num_workers=0,
    dataset=dict(ann_file=ann_dir + '/test.json',
                 feature_dir=world + '/features/test'))
val_evaluator = dict(ann_file=ann_dir + '/val_gt.json',
                     scorers=('bleu', 'rouge', 'cider'))  # no JVM per epoch
test_evaluator = dict(ann_file=ann_dir + '/test_gt.json')

# The official Noam shape at a toy scale: warm-up 300 iterations,
# peak lr 1e-3.
param_scheduler = [
    dict(type='NoamLR', model_dim=128, warmup=300, factor=0.2,
         by_epoch=False)
]
train_cfg = dict(max_epochs=4, val_interval=4)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=4, save_best=None, max_keep_ckpts=1))
randomness = dict(seed=0)
