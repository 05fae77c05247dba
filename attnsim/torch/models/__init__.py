"""Small model definitions for `attnsim capture` / `attnsim predict --model` (written here, no
downloaded weights; random initialisation). Each module has factories returning
``(model, example_inputs)``, the contract of ``SCRIPT.py:FACTORY`` (see docs/torch.md):

    llama          Llama-style decoder layers: RMSNorm, GQA attention with RoPE (SDPA, causal),
                   SwiGLU MLP.             factory (small, 2 layers), llama3_8b (4096 / 32 / 8 heads)
    vit            ViT encoder layers: LayerNorm, attention (SDPA, not causal), GELU MLP.
                                           factory (small), vit_l16 (1024 / 16 heads, 197 tokens)
    video_dit      video DiT layers: adaLN modulation, flex_attention under a 3D neighborhood
                   mask_mod on a (T, H, W) token grid, GELU MLP.   factory (small), large
    plain          GPT-2-style attention written as matmul, masked_fill, softmax, dropout, matmul.
                                           factory (small)

They ship inside the package (not examples/) so that an installed attnsim can run them by module
name, e.g. ``attnsim predict --model attnsim.torch.models.llama:llama3_8b``, and the tests use the
same files.
"""
