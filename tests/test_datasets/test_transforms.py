"""LoadCLIPFeatures given an image instead of a stored feature."""
import pytest

from pcm_plugin.datasets.transforms import LoadCLIPFeatures


def test_bad_input_image_file_through_the_features_pipeline():
    """What mmpretrain.inference_model feeds it: one line naming the
    inferencer that reads images (was KeyError: 'feature_dir')."""
    with pytest.raises(ValueError, match=(
            r"has \['img_path'\]\. To caption image files use "
            r'pcm_plugin.apis.PCMCaptionInferencer')):
        LoadCLIPFeatures()(dict(img_path='photo.jpg'))


# mmpretrain warns that the zoo entry has no checkpoint URL before our error.
@pytest.mark.filterwarnings('ignore:Unable to find pre-defined checkpoint')
def test_bad_input_mmpretrain_inference_model_names_the_inferencer(
        tmp_path):
    import mmpretrain
    import numpy as np
    from PIL import Image

    import pcm_plugin  # noqa: F401  the zoo
    image = tmp_path / 'photo.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    with pytest.raises(ValueError, match='PCMCaptionInferencer'):
        mmpretrain.inference_model('pcm-net_vit-b32_coco', str(image))
