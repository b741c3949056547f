# PCM-Net, Flickr30k, CLIP ViT-L/14 (64 x 1024 pooled patches, alpha 4.0).
# Paper Table 1: B4 28.5 / M 24.3 / R 51.4 / C 69.5 / S 18.2.
_base_ = ['./pcm_flickr.py']

feature_root = 'data/flickr30k/features/ViT-L-14'
clip_model = dict(name='ViT-L-14', checkpoint='data/clip/ViT-L-14.pt')
model = dict(
    mixup=dict(
        patch_dim=1024,
        global_dim=768,
        num_patches=64,
        concept_bank='data/concepts/coco446_ViT-L-14.npz',
        clip_head='data/clip/ViT-L-14.pt'),
    loss=dict(alpha=4.0))
train_dataloader = dict(dataset=dict(feature_dir=feature_root + '/train_sd'))
test_dataloader = dict(dataset=dict(feature_dir=feature_root + '/test'))
val_dataloader = test_dataloader
