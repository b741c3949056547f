# Cross-domain test: a Flickr30k-trained model (Flickr vocabulary, the
# COCO-derived concept bank as in the official code) captions the COCO 5k
# Karpathy test split. Test only:
#   python tools/test.py configs/pcm_flickr2coco.py \
#       work_dirs/pcm_flickr/best.pth
# Paper Table 2 (ViT-B/32): B4 17.1 / M 19.6 / R 43.2 / C 54.9 / S 12.8.
_base_ = ['./pcm_flickr.py']

target_root = 'data/coco'
test_dataloader = dict(
    dataset=dict(
        ann_file=target_root + '/annotations/test.json',
        feature_dir=target_root + '/features/ViT-B-32/test'))
test_evaluator = dict(ann_file=target_root + '/annotations/test_gt.json')
