# The embedded mini world, in the layout `projects/mini_world/tools/prepare.py`
# writes: synthetic renders (defect rate 0.3) for training, real renders
# for val/test. projects/mini_world/tools/demo.py and
# projects/mini_world/tools/ablation.py re-point these paths at any
# prepared world (projects.mini_world.pcm_mini_world.runs.world_config).
world = 'data/mini_world'
ann_dir = world + '/corpus/annotations'

pipeline = [dict(type='LoadCLIPFeatures'), dict(type='PackCaptionInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='SynthCaptionDataset',
        ann_file=ann_dir + '/train.json',
        feature_dir=world + '/features/synth_d030',
        pipeline=pipeline))

val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CaptionFeatureDataset',
        ann_file=ann_dir + '/val.json',
        feature_dir=world + '/features/val',
        pipeline=pipeline,
        test_mode=True))
# BLEU, ROUGE-L and CIDEr only during training: no JVM start per epoch.
val_evaluator = dict(
    type='COCOCaptionMetric', ann_file=ann_dir + '/val_gt.json',
    scorers=('bleu', 'rouge', 'cider'))

test_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CaptionFeatureDataset',
        ann_file=ann_dir + '/test.json',
        feature_dir=world + '/features/test',
        pipeline=pipeline,
        test_mode=True))
test_evaluator = dict(
    type='COCOCaptionMetric', ann_file=ann_dir + '/test_gt.json')
