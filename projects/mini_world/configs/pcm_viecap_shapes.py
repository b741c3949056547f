# The second host on the mini world: PCM-ViECap, a CLIP-prefix GPT-2
# captioner (PrefixLMCaptioner) with PCM-Net's mix-up and CLIP-weighted
# loss: pcm_shapes.py (PCMCaptioner) with another captioner around the
# same mix-up, loss, data and schedule. GPT-2 has random weights here (a
# 2-layer, width-96 model over the world's own word vocabulary: the mini
# world has no pretrained language model), so this compares the two hosts'
# use of PCM, not ViECap's benefit from a pretrained GPT-2.
# pcm_viecap_shapes_base.py is the same captioner without PCM and CXE. The
# hard prompt's words are in the world's vocabulary.
_base_ = ['./pcm_shapes.py']

model = dict(
    type='PrefixLMCaptioner',
    entity_prompt='there are {}',
    encoder=None,
    mapper=dict(
        type='PrefixMapper',
        embed_dim=96,
        out_dim=96,
        prefix_len=8,
        num_layers=2,
        num_heads=4,
        ffn_dim=384,
        attn_drop=0.0),
    decoder=dict(
        _delete_=True,
        type='GPT2PrefixDecoder',
        lm_config=dict(n_embd=96, n_layer=2, n_head=4, n_positions=64,
                       attn_pdrop=0.0),
        beam_size=3))
