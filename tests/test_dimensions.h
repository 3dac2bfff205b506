/* The dimensions of the test models (as config settings). */
#pragma once

/* The test models' dimensions, each different from every other (and from the batch of 2 and
 * the lengths of the tests), so that using one where another belongs changes a result: with
 * kv_lora_rank equal to qk_nope_head_dim, MLA's decode could scale by the wrong one unseen.
 * Heads of 8 channels make 24, not d_model's 30; chunks of 5 leave partial last chunks. */
#define TEST_DIMENSIONS                                                                                 \
    "model.d_model=30", "model.n_heads=3", "model.head_dim=8", "model.mla.kv_lora_rank=11",              \
        "model.mla.qk_nope_head_dim=12", "model.mla.qk_rope_head_dim=6", "model.mla.v_head_dim=14",        \
        "model.kda.gate_rank=13", "model.dplr.gate_rank=13",                                        \
        "model.linear.chunk_size=5", "model.gdn.chunk_size=5", "model.kda.chunk_size=5", "model.dplr.chunk_size=5"
