# PCM-Net on CLIP ViT-B/32 features (official COCO/Flickr B/32 configs,
# docs/method.md §3 and §5): 49 x 768 patches + a 512-d global embedding.
# The CLIP that extracted the features: its ln_post/proj head is frozen
# inside PCMMixup, and tools/caption_image.py uses it on raw images.
clip_model = dict(name='ViT-B-32', checkpoint='data/clip/ViT-B-32.pt')
model = dict(
    type='PCMCaptioner',
    tokenizer='data/coco/tokenizer.json',
    max_len=20,
    clip_weighted=True,
    mixup=dict(
        type='PCMMixup',
        patch_dim=768,
        global_dim=512,
        num_patches=49,
        embed_dim=512,
        concept_bank='data/concepts/coco446_ViT-B-32.npz',
        clip_head=clip_model['checkpoint'],
        mode='top',
        top_k=5,
        top_m=5,
        temperature=0.01,
        threshold=0.0,
        noise_var=0.016,
        dropout=0.5),
    encoder=dict(
        type='VisualSemanticEncoder',
        embed_dim=512,
        num_layers=3,
        num_heads=8,
        ffn_dim=2048,
        attn_drop=0.3,
        hidden_drop=0.2,
        ffn_drop=0.2),
    decoder=dict(
        type='CaptionTransformerDecoder',
        embed_dim=512,
        num_layers=3,
        num_heads=8,
        ffn_dim=2048,
        attn_drop=0.3,
        hidden_drop=0.2,
        word_drop=0.1,
        predictor_drop=0.5,
        beam_size=3),
    loss=dict(
        type='CLIPWeightedCELoss',
        alpha=2.5,
        label_smoothing=0.1,
        gamma=2.0,
        focal='batch'))
