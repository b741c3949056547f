# Cross-domain test: a COCO-trained model (its vocabulary and concept bank)
# captions the Flickr30k 1k test split. Test only:
#   python tools/test.py configs/pcm_coco2flickr.py work_dirs/pcm_coco/best.pth
# Paper Table 2 (ViT-B/32): B4 20.8 / M 19.2 / R 45.2 / C 45.5 / S 12.9.
_base_ = ['./pcm_coco.py']

target_root = 'data/flickr30k'
test_dataloader = dict(
    dataset=dict(
        ann_file=target_root + '/annotations/test.json',
        feature_dir=target_root + '/features/ViT-B-32/test'))
test_evaluator = dict(ann_file=target_root + '/annotations/test_gt.json')
