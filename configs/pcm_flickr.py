# PCM-Net, Flickr30k (Karpathy) trained on SD-synthesised images, ViT-B/32.
# As in the official configs the COCO-derived concept bank is used, and
# Flickr has no validation split: evaluation runs on the 1k test split.
# Paper Table 1: B4 26.9 / M 23.0 / R 50.1 / C 61.3 / S 16.8.
_base_ = ['./pcm_coco.py']

data_root = 'data/flickr30k'
feature_root = data_root + '/features/ViT-B-32'
model = dict(tokenizer=data_root + '/tokenizer.json')
train_dataloader = dict(
    dataset=dict(
        ann_file=data_root + '/annotations/train.json',
        feature_dir=feature_root + '/train_sd'))
test_dataloader = dict(
    dataset=dict(
        ann_file=data_root + '/annotations/test.json',
        feature_dir=feature_root + '/test'))
test_evaluator = dict(ann_file=data_root + '/annotations/test_gt.json')
val_dataloader = test_dataloader
val_evaluator = test_evaluator
