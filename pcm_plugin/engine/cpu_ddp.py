"""DistributedDataParallel wrapper that also works for CPU-only training."""
from mmengine.model import MMDistributedDataParallel

# mmengine's Runner looks wrappers up with a plain ``get`` on its own root
# registry (no scope switch), so this one is registered there; mmpretrain's
# child registry still finds it through its parent.
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUCompatDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that drops ``device_ids`` on CPU.

    mmengine always passes ``device_ids=[LOCAL_RANK]``, which torch rejects
    for a module whose parameters are on the CPU. On GPU it behaves exactly
    like ``MMDistributedDataParallel``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == 'cpu':
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)
