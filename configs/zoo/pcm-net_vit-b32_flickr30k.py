# Model-zoo entry pcm-net_vit-b32_flickr30k (configs/zoo/model-index.yml):
# the architecture of pcm_flickr.py with every file taken from the
# released weights, so that
#   mmpretrain.get_model('pcm-net_vit-b32_flickr30k',
#                        pretrained='X.safetensors')
# needs nothing else (a one-file release: tools/publish_model.py CONFIG
# CHECKPOINT X.safetensors). The vocabulary size is the official one
# + 2 ([UNK], [PAD]): tools/convert_official_checkpoint.py lays the
# official checkpoints out so.
_base_ = ['../pcm_flickr.py']
model = dict(
    tokenizer='from_weights',
    decoder=dict(vocab_size=7555),
    mixup=dict(concept_bank='from_weights', clip_head='from_weights'),
    # [UNK]/[PAD] are no official words: the loss is the official one.
    loss=dict(excluded_ids=[1, 2]))
