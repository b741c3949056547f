# Synthetic-image features for training, real-image features for val/test.
# Layout written by tools/data/* (see docs/data.md).
data_root = 'data/coco'
feature_root = data_root + '/features/ViT-B-32'

pipeline = [dict(type='LoadCLIPFeatures'), dict(type='PackCaptionInputs')]

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='SynthCaptionDataset',
        ann_file=data_root + '/annotations/train.json',
        feature_dir=feature_root + '/train_sd',
        pipeline=pipeline))

val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CaptionFeatureDataset',
        ann_file=data_root + '/annotations/val.json',
        feature_dir=feature_root + '/val',
        pipeline=pipeline,
        test_mode=True))
val_evaluator = dict(
    type='COCOCaptionMetric', ann_file=data_root + '/annotations/val_gt.json')

test_dataloader = dict(
    batch_size=64,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CaptionFeatureDataset',
        ann_file=data_root + '/annotations/test.json',
        feature_dir=feature_root + '/test',
        pipeline=pipeline,
        test_mode=True))
test_evaluator = dict(
    type='COCOCaptionMetric', ann_file=data_root + '/annotations/test_gt.json')
