"""Write predicted captions as a COCO results JSON (no pickle)."""
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric

from pcm_plugin.registry import METRICS
from pcm_plugin.utils.fileio import atomic_write_json


@METRICS.register_module()
class DumpCaptions(BaseMetric):
    """Collect ``pred_caption`` per image and write them to ``out_file``.

    The file is the COCO caption results format,
    ``[{"image_id": int, "caption": str}, ...]``, sorted by image id and
    de-duplicated, so it can be scored by any COCO caption toolkit. This is
    what ``tools/test.py --out FILE --out-item pred`` adds (mmengine's
    ``DumpResults`` would write a pickle).

    Args:
        out_file (str): Output ``.json`` path.
        collect_device (str): Device for gathering across ranks.
    """

    def __init__(self, out_file: str, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not out_file.endswith('.json'):
            raise ValueError(f'DumpCaptions writes JSON; got out_file '
                             f'{out_file!r} (use a .json name)')
        self.out_file = out_file

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            get = sample.get if hasattr(sample, 'get') else sample.__getitem__
            self.results.append(dict(image_id=int(get('image_id')),
                                     caption=get('pred_caption')))

    def compute_metrics(self, results: List[Dict]) -> Dict:
        unique = {}
        for item in results:
            unique.setdefault(item['image_id'], item['caption'])
        rows = [dict(image_id=i, caption=unique[i]) for i in sorted(unique)]
        atomic_write_json(self.out_file, rows)
        return {}
