// The parameter layout a model file stores (model/param_layout.h): counts, order, offsets,
// layer ranges, weight decay and initialisation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/checkpoint.h"

#include "tests/checkpoint_test_support.h"

using namespace checkpoint_test;

namespace {

ModelShape gpt2_small_shape(int padded_vocab) {
    ModelShape shape;
    shape.n_layer = 12;
    shape.n_embd = 768;
    shape.n_head = 12;
    shape.max_seq_len = 1024;
    shape.vocab_size = 50257;
    shape.padded_vocab_size = padded_vocab;
    return shape;
}

TEST(CheckpointLayoutTest, Gpt2SmallParameterCount) {
    // 124,475,904 with the vocabulary padded to 50304 (128), 124,445,184 = the 124.4M of
    // experiments.md with padding to 8 (50264).
    EXPECT_EQ(ParamLayout(gpt2_small_shape(50304), 0.02).total(), 124475904);
    EXPECT_EQ(ParamLayout(gpt2_small_shape(50264), 0.02).total(), 124445184);
}

TEST(CheckpointLayoutTest, OrderShapesAndOffsetsAreContiguous) {
    const ModelShape shape = tiny_shape();
    const ParamLayout layout(shape, 0.02);
    const std::vector<std::string> names = {"wte",       "wpe",         "ln1_w", "ln1_b", "qkv_w",
                                            "qkv_b",     "attn_proj_w", "attn_proj_b", "ln2_w", "ln2_b",
                                            "fc_w",      "fc_b",        "fc_proj_w",   "fc_proj_b", "lnf_w",
                                            "lnf_b"};
    ASSERT_EQ(layout.tensors().size(), names.size());
    int64_t offset = 0;
    for (size_t i = 0; i < names.size(); ++i) {
        const ParamTensor& t = layout.tensors()[i];
        EXPECT_EQ(t.name, names[i]);
        EXPECT_EQ(t.offset, offset) << t.name;
        int64_t numel = 1;
        for (int64_t d : t.shape) numel *= d;
        EXPECT_EQ(t.numel, numel) << t.name;
        EXPECT_EQ(t.per_layer, t.shape.size() >= 2 && t.name != "wte" && t.name != "wpe") << t.name;
        offset += t.numel;
    }
    EXPECT_EQ(layout.total(), offset);
    EXPECT_EQ(layout.get("wte").shape, (std::vector<int64_t>{64, 8}));
    EXPECT_EQ(layout.get("wpe").shape, (std::vector<int64_t>{16, 8}));
    EXPECT_EQ(layout.get("qkv_w").shape, (std::vector<int64_t>{2, 24, 8}));
    EXPECT_EQ(layout.get("fc_proj_w").shape, (std::vector<int64_t>{2, 8, 32}));
    EXPECT_EQ(layout.get("lnf_b").shape, (std::vector<int64_t>{8}));
    const ParamTensor& fc_b = layout.get("fc_b");
    EXPECT_EQ(layout.layer_offset(fc_b, 1), fc_b.offset + 32);
    EXPECT_THROW(layout.layer_offset(fc_b, 2), std::out_of_range);
    EXPECT_THROW(layout.layer_offset(layout.get("wte"), 0), std::invalid_argument);
    EXPECT_THROW(layout.get("lm_head"), std::out_of_range);
}

TEST(CheckpointLayoutTest, OptionalTensors) {
    ModelShape shape = tiny_shape();
    shape.learned_pos_emb = false;
    shape.post_norm = true;
    const ParamLayout layout(shape, 0.02);
    EXPECT_EQ(layout.find("wpe"), nullptr);
    EXPECT_EQ(layout.find("lnf_w"), nullptr);
    EXPECT_EQ(layout.find("lnf_b"), nullptr);
    EXPECT_EQ(layout.tensors().front().name, "wte");
    EXPECT_EQ(layout.tensors()[1].name, "ln1_w");
    EXPECT_EQ(layout.tensors().back().name, "fc_proj_b");
}

TEST(CheckpointLayoutTest, LayerRangesTileTheArrayOnce) {
    // The gradient all-reduce buckets: an element left out would stay unreduced (ranks drift
    // apart silently), one in two buckets would be summed twice.
    ModelShape post_norm = tiny_shape();
    post_norm.post_norm = true;
    post_norm.learned_pos_emb = false;
    ModelShape one_layer = tiny_shape();
    one_layer.n_layer = 1;
    for (const ModelShape& shape : {tiny_shape(), post_norm, one_layer, gpt2_small_shape(50304)}) {
        const ParamLayout layout(shape, 0.02);
        std::vector<ParamRange> all;
        auto claim = [&](const std::vector<ParamRange>& ranges) {
            for (size_t i = 0; i < ranges.size(); ++i) {
                EXPECT_GT(ranges[i].count, 0);
                if (i > 0) {
                    EXPECT_LT(ranges[i - 1].offset + ranges[i - 1].count, ranges[i].offset) << "not merged";
                }
            }
            all.insert(all.end(), ranges.begin(), ranges.end());
        };
        for (int layer = 0; layer < shape.n_layer; ++layer) claim(layout.layer_ranges(layer));
        claim(layout.non_layer_ranges());
        std::sort(all.begin(), all.end(), [](const ParamRange& a, const ParamRange& b) { return a.offset < b.offset; });
        int64_t next = 0;  // sorted, each range must start where the previous one ended
        for (const ParamRange& range : all) {
            EXPECT_EQ(range.offset, next) << "n_layer " << shape.n_layer;
            next = range.offset + range.count;
        }
        EXPECT_EQ(next, layout.total()) << "n_layer " << shape.n_layer;
    }
    const ParamLayout layout(tiny_shape(), 0.02);
    const ParamTensor& fc_b = layout.get("fc_b");
    const std::vector<ParamRange> layer1 = layout.layer_ranges(1);
    EXPECT_EQ(layer1.size(), 12u);  // the 12 per-layer tensors, none adjacent when n_layer > 1
    EXPECT_NE(std::find(layer1.begin(), layer1.end(), ParamRange{fc_b.offset + 32, 32}), layer1.end());
    // wte + wpe are adjacent, and so are lnf_w + lnf_b.
    EXPECT_EQ(layout.non_layer_ranges(),
              (std::vector<ParamRange>{{0, 64 * 8 + 16 * 8}, {layout.get("lnf_w").offset, 16}}));
    EXPECT_EQ(ParamLayout(one_layer, 0.02).layer_ranges(0).size(), 1u);  // one contiguous block
    EXPECT_THROW(layout.layer_ranges(2), std::out_of_range);
}

TEST(CheckpointLayoutTest, WeightDecayAndInit) {
    const ParamLayout layout(tiny_shape(), 0.02);
    const double projection = 0.02 / std::sqrt(4.0);  // 2 * n_layer = 4
    for (const ParamTensor& t : layout.tensors()) {
        const bool linear_weight = t.name == "qkv_w" || t.name == "attn_proj_w" || t.name == "fc_w" ||
                                   t.name == "fc_proj_w";
        EXPECT_EQ(t.weight_decay, linear_weight) << t.name;
        if (t.name == "attn_proj_w" || t.name == "fc_proj_w") {
            EXPECT_EQ(t.init, ParamInit::normal);
            EXPECT_DOUBLE_EQ(t.init_std, projection) << t.name;
        } else if (linear_weight || t.name == "wte" || t.name == "wpe") {
            EXPECT_EQ(t.init, ParamInit::normal);
            EXPECT_DOUBLE_EQ(t.init_std, 0.02) << t.name;
        } else if (t.name.back() == 'w') {
            EXPECT_EQ(t.init, ParamInit::ones) << t.name;  // LayerNorm weights
        } else {
            EXPECT_EQ(t.init, ParamInit::zeros) << t.name;  // biases
        }
    }
}

}  // namespace
