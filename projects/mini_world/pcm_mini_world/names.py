"""The names the mini world's tools offer on their command lines.

Standard library only, and nothing else in the lab package runs on
import: the tools build their parsers from these before ``pcm_plugin``
(and torch) load, so ``--help`` answers at once. The modules that use the
names import them from here.
"""
from typing import Dict, Optional, Tuple

# Where a world is prepared when no --root is given.
DEFAULT_ROOT = 'data/mini_world'

# Committed mini CLIPs: kind -> folder under projects/mini_world/resources.
CLIP_KINDS: Dict[str, str] = {'localized': 'mini_clip_localized',
                              'weak': 'mini_clip'}
DEFAULT_CLIP_KIND = 'localized'

# Ablation variant -> (config file in the config dir, training feature
# store; None means the synthetic renders of the cell's defect rate).
VARIANTS: Dict[str, Tuple[str, Optional[str]]] = {
    'base': ('pcm_shapes_base.py', None),
    'pcm': ('pcm_shapes_pcm.py', None),
    'cxe': ('pcm_shapes_cxe.py', None),
    'full': ('pcm_shapes.py', None),
    'real': ('pcm_shapes_base.py', 'real_train'),
    'cxe_nofocal': ('pcm_shapes_cxe_nofocal.py', None),
    'full_nofocal': ('pcm_shapes_nofocal.py', None),
    # Full PCM-Net under the mix-up's other selection rules (issue 26 §3):
    # one patch per retrieved concept, and the backgrounds never written.
    'full_perconcept': ('pcm_shapes_perconcept.py', None),
    'full_nostuff': ('pcm_shapes_nostuff.py', None),
    # The second host: a CLIP-prefix GPT-2 captioner without and with
    # PCM + CXE, beside PCMCaptioner's base and full.
    'prefix_base': ('pcm_viecap_shapes_base.py', None),
    'prefix_full': ('pcm_viecap_shapes.py', None),
    # The same two without ViECap's hard prompt of retrieved concepts.
    'prefix_noprompt_base': ('pcm_viecap_shapes_noprompt_base.py', None),
    'prefix_noprompt_full': ('pcm_viecap_shapes_noprompt.py', None),
}
DEFAULT_VARIANTS = ('base', 'pcm', 'cxe', 'full', 'real')
