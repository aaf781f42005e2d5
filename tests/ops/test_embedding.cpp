// Embedding: forward lookup (assign) and scatter-add backward (accumulate), fairseq padding_idx.
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/embedding.hpp>
#include <lnformer/backend/reference/embedding.hpp>
#include <lnformer/backend/reference/reference.hpp>

#include "ops/fixtures_embedding.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <vector>

using namespace lnformer;
using namespace lnformer::test;

TEST_CASE("embedding_forward: Cpu agrees with Reference") {
  Rng rng(11);
  // The first eight cases (the forward has no padding_idx).
  for (auto const& c : std::span(kEmbeddingCases).first(8)) {
    CAPTURE(c.str());
    auto const [table, ids, y_ref] = embedding_forward_reference(c, 2.5f, rng);
    auto const table_cpu = to_backend<Cpu>(table);
    auto const ids_cpu = to_backend<Cpu>(ids);
    Tensor<Cpu> y(with_last(c.ids, c.d));
    ops::embedding_forward(Cpu{}, y, table_cpu, ids_cpu, 2.5f);
    // scale * table[id] is one correctly rounded product on both sides.
    check_close(y, y_ref, 0, 0, "embedding_forward y");
    // Spot check the definition itself.
    std::int32_t const id0 = ids.data()[0];
    CHECK(y.data()[c.d - 1] == 2.5f * table(id0, c.d - 1));
  }
}

TEST_CASE("embedding_backward: Cpu agrees with Reference, with repeated ids and padding") {
  Rng rng(12);
  for (auto const& c : kEmbeddingCases) {
    CAPTURE(c.str());
    auto const [ids, dy, before, dtable_ref] = embedding_backward_reference(c, 0.5f, rng);
    auto dtable = to_backend<Cpu>(before);  // an existing gradient: += keeps it
    ops::embedding_backward(Cpu{}, dtable, to_backend<Cpu>(dy), to_backend<Cpu>(ids), 0.5f, c.pad);
    check_close(dtable, dtable_ref, 1e-5, 1e-6, "embedding_backward dtable");
    // The padding row receives nothing: its bits are unchanged on both backends.
    if (c.pad >= 0)
      for (std::int64_t k = 0; k < c.d; ++k) {
        CHECK(dtable(c.pad, k) == before(c.pad, k));
        CHECK(dtable_ref(c.pad, k) == before(c.pad, k));
      }
  }
}

TEST_CASE("embedding_backward: repeated ids add up, hand-checked") {
  // ids = [2, 0, 2, 2], d = 2, scale = 3: row 2 gets 3 * (dy0 + dy2 + dy3), row 0 gets 3 * dy1, row 1
  // nothing.
  std::vector<float> const dy_h{1, 2, 10, 20, 100, 200, 1000, 2000};
  auto check_backend = [&]<class B>(B) {
    auto const ids = make_ids<B>({4}, {2, 0, 2, 2});
    Tensor<B> const dy({4, 2}, std::span<float const>(dy_h));
    Tensor<B> dtable({3, 2});
    ops::embedding_backward(B{}, dtable, dy, ids, 3.f);
    CHECK(dtable(2, 0) == 3.f * 1101);
    CHECK(dtable(2, 1) == 3.f * 2202);
    CHECK(dtable(0, 0) == 30.f);
    CHECK(dtable(0, 1) == 60.f);
    CHECK(dtable(1, 0) == 0.f);
    CHECK(dtable(1, 1) == 0.f);
    // padding_idx = 2: the three tokens of row 2 are padding and contribute nothing.
    Tensor<B> dpad({3, 2});
    ops::embedding_backward(B{}, dpad, dy, ids, 3.f, 2);
    CHECK(dpad(2, 0) == 0.f);
    CHECK(dpad(0, 1) == 60.f);
  };
  check_backend(Cpu{});
  check_backend(Reference{});
}

TEST_CASE_TEMPLATE("embedding: backward accumulates into dtable, forward assigns y", B, Cpu, Reference) {
  Rng rng(13);
  std::int64_t const V = 9, d = 40, N = 50;
  auto const table = random_tensor<B>({V, d}, rng);
  auto const ids = make_ids<B>({N}, random_ids(N, V, rng, 3));
  auto const dy = random_tensor<B>({N, d}, rng);

  Tensor<B> once({V, d}), twice({V, d});
  ops::embedding_backward(B{}, once, dy, ids, 1.5f, 3);
  ops::embedding_backward(B{}, twice, dy, ids, 1.5f, 3);
  ops::embedding_backward(B{}, twice, dy, ids, 1.5f, 3);
  for (std::int64_t i = 0; i < once.numel(); ++i)
    REQUIRE(twice.data()[i] == doctest::Approx(2 * once.data()[i]));

  auto y = random_tensor<B>({N, d}, rng, 100.f, 200.f);  // stale contents must be overwritten
  ops::embedding_forward(B{}, y, table, ids, 1.f);
  ops::embedding_forward(B{}, y, table, ids, 1.f);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < d; ++k) REQUIRE(y(n, k) == table(ids.data()[n], k));
}

TEST_CASE("embedding: finite-difference gradient of the table (repeated ids, a padding id)") {
  Rng rng(14);
  std::int64_t const V = 6, d = 5;
  std::int32_t const pad = 1;
  // Id 4 appears three times, the padding id twice, id 0 once; ids 2, 3, 5 never.
  std::vector<std::int32_t> const ids_h{4, 1, 0, 4, 1, 4};
  auto const ids = make_ids<Cpu>({2, 3}, ids_h);
  auto table = random_tensor<Cpu>({V, d}, rng);
  float const scale = 1.7f;
  // Padding positions carry no loss (their weights are 0), so the loss's true gradient is zero on the
  // padding row; the analytic gradient is computed with the full weights as dy and must still agree,
  // because embedding_backward drops the padding tokens itself.
  auto const w = random_tensor<Cpu>({2, 3, d}, rng);
  auto w_masked = w.clone();
  for (std::size_t n = 0; n < ids_h.size(); ++n)
    if (ids_h[n] == pad)
      for (std::int64_t k = 0; k < d; ++k) w_masked.data()[static_cast<std::int64_t>(n) * d + k] = 0.f;

  Tensor<Cpu> y({2, 3, d});
  auto loss = [&] {
    ops::embedding_forward(Cpu{}, y, table, ids, scale);
    return weighted_sum<Cpu>(y.cview(), w_masked.cview());
  };
  Tensor<Cpu> dtable({V, d});
  ops::embedding_backward(Cpu{}, dtable, w, ids, scale, pad);
  check_gradient("table", table, dtable, loss, 1e-2, 1e-4, 1e-5);

  // Without padding_idx the padding row gets the true gradient of the unmasked loss.
  auto loss_full = [&] {
    ops::embedding_forward(Cpu{}, y, table, ids, scale);
    return weighted_sum<Cpu>(y.cview(), w.cview());
  };
  Tensor<Cpu> dtable_full({V, d});
  ops::embedding_backward(Cpu{}, dtable_full, w, ids, scale);
  check_gradient("table (no padding_idx)", table, dtable_full, loss_full, 1e-2, 1e-4, 1e-5);
  CHECK(dtable_full(pad, 0) != 0.f);
}

TEST_CASE_TEMPLATE("embedding: ids out of range are ValueErrors naming id, position and V; nothing written",
                   B, Cpu, Reference) {
  auto const table = Tensor<B>({5, 2});
  auto y = Tensor<B>({2, 2, 2});
  y.data()[0] = 42.f;
  auto const bad = make_ids<B>({2, 2}, {0, 1, 7, 2});
  CHECK_THROWS_WITH_AS(
      ops::embedding_forward(B{}, y, table, bad, 1.f),
      doctest::Contains("embedding_forward: id 7 at position 2 of ids (shape [2, 2]) is out of range "
                        "[0, V = 5) for a table of shape [5, 2]"),
      ValueError);
  CHECK(y.data()[0] == 42.f);  // checked before anything is written
  auto const negative = make_ids<B>({2, 2}, {0, 1, 2, -1});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(B{}, y, table, negative, 1.f),
                       doctest::Contains("id -1 at position 3"), ValueError);

  auto dtable = Tensor<B>({5, 2});
  auto const dy = Tensor<B>({2, 2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_backward(B{}, dtable, dy, bad, 1.f),
                       doctest::Contains("embedding_backward: id 7 at position 2"), ValueError);
  CHECK_THROWS_WITH_AS(ops::embedding_backward(B{}, dtable, dy, negative, 1.f, 2),
                       doctest::Contains("id -1 at position 3"), ValueError);
  auto const good = make_ids<B>({2, 2}, {0, 1, 2, 3});
  CHECK_THROWS_WITH_AS(ops::embedding_backward(B{}, dtable, dy, good, 1.f, 5),
                       doctest::Contains("padding_idx 5 is out of range for dtable of shape [5, 2]"),
                       ValueError);
  CHECK_NOTHROW(ops::embedding_backward(B{}, dtable, dy, good, 1.f, -7));  // any negative: no padding
}

TEST_CASE_TEMPLATE("embedding: shape errors name the shapes", B, Cpu, Reference) {
  auto const table = Tensor<B>({5, 4});
  auto const ids = make_ids<B>({3}, {0, 1, 2});
  auto y_wrong_d = Tensor<B>({3, 5});
  CHECK_THROWS_WITH_AS(
      ops::embedding_forward(B{}, y_wrong_d, table, ids, 1.f),
      doctest::Contains("embedding_forward: y has shape [3, 5] but ids has shape [3] and table has "
                        "shape [5, 4]; y must be [..., 4] with 12 elements"),
      ShapeError);
  auto y_wrong_n = Tensor<B>({2, 4});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(B{}, y_wrong_n, table, ids, 1.f),
                       doctest::Contains("y has shape [2, 4] but ids has shape [3]"), ShapeError);
  auto const flat_table = Tensor<B>({20});
  auto y = Tensor<B>({3, 4});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(B{}, y, flat_table, ids, 1.f),
                       doctest::Contains("table has shape [20]; it must be [V, d]"), ShapeError);
  auto y_t = Tensor<B>({4, 3});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(B{}, y_t.view().transposed(), table, ids, 1.f),
                       doctest::Contains("y (shape [3, 4]) and ids (shape [3]) must be contiguous"),
                       ShapeError);

  auto dtable = Tensor<B>({5, 4});
  auto const dy_wrong = Tensor<B>({3, 3});
  CHECK_THROWS_WITH_AS(
      ops::embedding_backward(B{}, dtable, dy_wrong, ids, 1.f),
      doctest::Contains("embedding_backward: dy has shape [3, 3] but ids has shape [3] and dtable has "
                        "shape [5, 4]"),
      ShapeError);
  // Any ids shape works when y is ids.shape + [d] (or any [..., d] with the same count).
  auto const ids2 = make_ids<B>({2, 3}, {0, 1, 2, 3, 4, 0});
  auto y2 = Tensor<B>({2, 3, 4});
  CHECK_NOTHROW(ops::embedding_forward(B{}, y2, table, ids2, 1.f));
  auto const dy2 = Tensor<B>({6, 4});
  CHECK_NOTHROW(ops::embedding_backward(B{}, dtable, dy2, ids2, 1.f));
  // Empty batches are fine.
  auto const no_ids = make_ids<B>({0}, {});
  auto y0 = Tensor<B>({0, 4});
  CHECK_NOTHROW(ops::embedding_forward(B{}, y0, table, no_ids, 1.f));
  CHECK_NOTHROW(ops::embedding_backward(B{}, dtable, y0, no_ids, 1.f));
}
