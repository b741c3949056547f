# Official optimisation (docs/method.md §6.1): Adam, no weight decay, Noam
# (d=512, warm-up 10k, stepped per iteration; it sets the lr itself, so the
# optimizer's lr is only a placeholder), gradient clipping by value 0.1,
# 12 epochs with evaluation every epoch. `fused=True`: the same update in
# one kernel over all parameters (CPU and GPU) instead of a loop of small
# ops per parameter: on CPU the optimizer's share of a COCO-size step falls
# from 8 % to 2-3 % (docs/benchmarks/speed.md).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='Adam', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
        fused=True),
    clip_grad=dict(type='value', clip_value=0.1))

param_scheduler = [
    dict(type='NoamLR', model_dim=512, warmup=10000, by_epoch=False)
]

# The loop resumes mid-epoch from a resume point (AtomicCheckpointHook).
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=12,
                 val_interval=1)
val_cfg = dict()
test_cfg = dict()

# The batch is per process: N processes train on N x 32. --auto-scale-lr
# (enable=True) scales the lr linearly by N x 32 / base_batch_size (NoamLR's
# factor too); off by default, as the official single-GPU recipe.
auto_scale_lr = dict(base_batch_size=32, enable=False)
