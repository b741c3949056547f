# PCM-Net, MSCOCO, CLIP ViT-L/14: 16x16 patch grid average-pooled 2x2 to
# 8x8 = 64 x 1024 tokens + a 768-d global embedding; CXE alpha = 4.0 and
# FFN/hidden dropout 0.25 as in the official COCO L/14 config.
# Paper Table 1: B4 33.6 / M 26.9 / R 55.4 / C 113.6 / S 20.8.
_base_ = ['./pcm_coco.py']

feature_root = 'data/coco/features/ViT-L-14'
clip_model = dict(name='ViT-L-14', checkpoint='data/clip/ViT-L-14.pt')
model = dict(
    mixup=dict(
        patch_dim=1024,
        global_dim=768,
        num_patches=64,
        concept_bank='data/concepts/coco446_ViT-L-14.npz',
        clip_head='data/clip/ViT-L-14.pt'),
    encoder=dict(hidden_drop=0.25, ffn_drop=0.25),
    decoder=dict(hidden_drop=0.25),
    loss=dict(alpha=4.0))
train_dataloader = dict(dataset=dict(feature_dir=feature_root + '/train_sd'))
val_dataloader = dict(dataset=dict(feature_dir=feature_root + '/val'))
test_dataloader = dict(dataset=dict(feature_dir=feature_root + '/test'))
