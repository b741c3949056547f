"""tools/caption_image.py: results on stdout, progress on stderr, and
``--out`` holding what the console shows."""
import json

from tests.helpers import write_images

TOOL = 'tools/caption_image.py'


def test_stdout_holds_only_results_and_progress_is_plain_lines(
        checkpoint, tmp_path, tool_in_process):
    """``caption_image.py CFG CKPT one.jpg > out.tsv`` once got the
    progress bar glued to its first line."""
    config, ckpt, _ = checkpoint
    image = write_images(str(tmp_path), n=1)[0]
    proc = tool_in_process(TOOL, [config, ckpt, image])
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'{image}\t')
    assert lines[0].count('\t') == 1
    assert 'captioning: 1/1 batch (100%)' in proc.stderr
    assert '\r' not in proc.stderr + proc.stdout


def test_out_keeps_the_concepts(checkpoint, tmp_path, tool_in_process):
    config, ckpt, _ = checkpoint
    images = write_images(str(tmp_path), n=2)
    out = tmp_path / 'captions.json'
    proc = tool_in_process(TOOL, [config, ckpt, *images, '--concepts',
                                  '--out', out])
    written = json.loads(out.read_text())
    printed = [line.split('\t') for line in proc.stdout.splitlines()]
    assert list(written) == images
    for image, caption, concepts in printed:
        assert written[image] == dict(
            caption=caption, concepts=concepts.strip('[]').split(', '))
    plain = tmp_path / 'plain.json'
    tool_in_process(TOOL, [config, ckpt, *images, '--out', plain])
    assert json.loads(plain.read_text()) == {
        image: caption for image, caption, _ in printed}


def test_results_name_their_image_file(checkpoint, tmp_path):
    """The ``image`` key the inferencer's docstring promises: the path,
    or None for an in-memory image."""
    import numpy as np
    from PIL import Image

    from pcm_plugin.apis import PCMCaptionInferencer
    config, ckpt, _ = checkpoint
    paths = write_images(str(tmp_path), n=2)
    inferencer = PCMCaptionInferencer(config, ckpt)
    assert [r['image'] for r in inferencer(str(tmp_path))] == paths
    array = np.asarray(Image.open(paths[0]).convert('RGB'))
    assert [r['image'] for r in inferencer([array, paths[1]])] == \
        [None, paths[1]]
