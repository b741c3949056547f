# Mini-world ablation "Base" (paper Table 3, first row): no mix-up and the
# plain label-smoothed cross-entropy. The train-on-real upper bound is this
# config on the real renders' features:
#   python tools/train.py projects/mini_world/configs/pcm_shapes_base.py \
#       --cfg-options train_dataloader.dataset.feature_dir=\
#       data/mini_world/features/real_train
_base_ = ['./pcm_shapes.py']

model = dict(
    clip_weighted=False, mixup=dict(mode='none'), loss=dict(focal='none'))
