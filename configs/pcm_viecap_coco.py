# PCM-ViECap (paper Table 4): PCM-Net's mix-up and CLIP-weighted loss in a
# CLIP-prefix GPT-2 captioner in the ClipCap / ViECap manner, trained on
# SD-synthesised MSCOCO images (Karpathy), CLIP ViT-B/32. Paper Table 4
# (NoCaps overall CIDEr): ViECap on synthetic features 70.5, with PCM + CXE
# 74.7. configs/pcm_viecap_coco_base.py is the same captioner without PCM
# and CXE.
#
# pcm_coco.py with another captioner: PrefixLMCaptioner maps the mix-up's
# visual tokens to 10 prefix embeddings of GPT-2 (PrefixMapper), adds
# ViECap's entity hard prompt (the K = 5 concepts PCMMixup retrieves) and
# fine-tunes GPT-2 with teacher forcing; captions come from beam search
# through GPT-2. The mix-up, the loss, the data and the hooks are
# pcm_coco.py's, unchanged.
#
# NEEDS the pretrained GPT-2 (124M) in a local folder: its config.json,
# model.safetensors and tokenizer files (tokenizer.json,
# tokenizer_config.json, vocab.json, merges.txt), e.g. fetched once on a
# machine with internet access by
#   huggingface-cli download gpt2 --local-dir data/gpt2
# Nothing is downloaded at run time; without the folder the build stops
# with one line naming it. The caption vocabulary is GPT-2's BPE
# (tokenizer=gpt2), so max_len counts BPE pieces.
#
# The mapper, prompt and optimiser settings are this plugin's choices after
# ClipCap / ViECap (prefix length 10, an 8-layer transformer mapper; AdamW
# at 2e-5 with a 5,000-iteration warm-up, as ClipCap fine-tunes GPT-2), a
# starting point rather than the paper's PCM-ViECap recipe, which it does
# not give.
_base_ = ['./pcm_coco.py']

gpt2 = 'data/gpt2'
model = dict(
    type='PrefixLMCaptioner',
    tokenizer=gpt2,
    entity_prompt='There are {} in the image.',
    encoder=None,
    mapper=dict(
        type='PrefixMapper',
        embed_dim=512,
        out_dim=768,
        prefix_len=10,
        num_layers=8,
        num_heads=8,
        ffn_dim=2048),
    decoder=dict(
        _delete_=True,
        type='GPT2PrefixDecoder',
        lm_path=gpt2,
        beam_size=3,
        attn_impl='sdpa'))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-5, weight_decay=0.01),
    clip_grad=dict(_delete_=True, type='norm', max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=5000)
]
