// exchange_layout: every rank builds the same global layout from the ranks'
// states, with one writer per piece of data, or every rank throws the same
// error naming the tensor.
#include "floe/layout.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/layout_cache.hpp"
#include "core/shape_text.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

using namespace std::chrono_literals;
using test::catch_error;
using test::Caught;
using test::dim0_shard;
using test::replicated_whole;
using test::run_within;
using test::same_on_all_ranks;
using test::zero_flat_shard;

// A text form of everything in a layout, to compare across ranks.
std::string describe(const GlobalLayout& layout) {
  std::string out = "world_size=" + std::to_string(layout.world_size) + "\n";
  for (const auto& t : layout.tensors) {
    out += t.spec.key() + " " + shape_text(t.spec.dtype, t.spec.shape) + ":";
    for (const auto& p : t.pieces) {
      out += " " + std::to_string(p.rank) + "=" + p.region.to_string() +
             (p.writer ? "(w)" : "");
    }
    out += "\n";
  }
  return out;
}

class Layout : public ::testing::Test {
 protected:
  const int rank = test::world_rank();
  const int size = test::world_size();
  State state;

  GlobalLayout exchange() {
    GlobalLayout layout;
    run_within(60s, [&] { layout = exchange_layout(state, MPI_COMM_WORLD); });
    return layout;
  }

  // What exchange_layout threw here, after checking every rank threw the same.
  Caught exchange_error() {
    const Caught c = catch_error([&] { (void)exchange(); });
    EXPECT_TRUE(same_on_all_ranks(std::to_string(c.thrown) + " " +
                                  std::string(error_code_name(c.code)) + ": " +
                                  c.message));
    return c;
  }
};

// `t` has a piece, a writer, for each rank whose region `want(rank)` holds
// elements, in rank order; a rank whose region is empty has none.
void expect_pieces(const TensorLayout& t, int size,
                   Region (*want)(const Shape&, int, int)) {
  std::size_t k = 0;
  for (int r = 0; r < size; ++r) {
    const Region region = want(t.spec.shape, r, size);
    if (region.elements() == 0) continue;
    ASSERT_LT(k, t.pieces.size()) << t.spec.key() << ": no piece for rank " << r;
    EXPECT_EQ(t.pieces[k].rank, r) << t.spec.key();
    EXPECT_EQ(t.pieces[k].region, region)
        << t.spec.key() << " rank " << r << ": " << t.pieces[k].region.to_string();
    EXPECT_TRUE(t.pieces[k].writer) << t.spec.key() << " rank " << r;
    ++k;
  }
  EXPECT_EQ(t.pieces.size(), k) << t.spec.key();
  EXPECT_EQ(t.writers().size(), k) << t.spec.key();
}

TEST_F(Layout, Dim0ShardsUnevenAcrossRanks) {
  // 10 rows over 1..4 ranks: 10 / 5,5 / 4,3,3 / 3,3,2,2. And 3 rows, which
  // leaves rank 3 of 4 an empty shard.
  state.add_model("w", DType::kF32, {10, 3}, dim0_shard({10, 3}, rank, size));
  state.add_model("short", DType::kBF16, {3, 8},
                  dim0_shard({3, 8}, rank, size));
  const GlobalLayout layout = exchange();
  EXPECT_EQ(layout.world_size, size);
  ASSERT_EQ(layout.tensors.size(), 2u);
  EXPECT_EQ(layout.tensors[0].spec.key(), "model/w");
  EXPECT_EQ(layout.tensors[0].spec.dtype, DType::kF32);
  EXPECT_EQ(layout.tensors[0].spec.shape, (Shape{10, 3}));
  expect_pieces(layout.tensors[0], size, dim0_shard);
  expect_pieces(layout.tensors[1], size, dim0_shard);
  if (size == 4) {
    EXPECT_EQ(layout.tensors[0].pieces[3].region.to_string(), "box[8:10,0:3]");
    // Rank 3's shard of "short" is empty: ranks 0-2 hold its 3 rows.
    ASSERT_EQ(layout.tensors[1].pieces.size(), 3u);
    EXPECT_EQ(layout.tensors[1].pieces[2].rank, 2);
  }
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, ZeroStyleFlatRanges) {
  // 35 elements: slices of ceil(35 / size); the last may be short or empty.
  state.add_optimizer("w", "exp_avg", DType::kF32, {7, 5},
                      zero_flat_shard({7, 5}, rank, size));
  state.add_optimizer("w", "exp_avg_sq", DType::kF32, {7, 5},
                      zero_flat_shard({7, 5}, rank, size));
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 2u);
  EXPECT_EQ(layout.tensors[0].spec.key(), "optimizer/w/exp_avg");
  EXPECT_EQ(layout.tensors[1].spec.key(), "optimizer/w/exp_avg_sq");
  expect_pieces(layout.tensors[0], size, zero_flat_shard);
  expect_pieces(layout.tensors[1], size, zero_flat_shard);
  std::uint64_t covered = 0;
  for (const auto* p : layout.tensors[0].writers())
    covered += p->region.elements();
  EXPECT_EQ(covered, 35u);
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, ReplicatedWholeTensorIsWrittenByRankZero) {
  state.add_model("embed", DType::kF16, {4, 6}, replicated_whole({4, 6}));
  state.add_model("step_scale", DType::kF32, {},
                  replicated_whole({}));  // a scalar
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 2u);
  for (const auto& t : layout.tensors) {
    ASSERT_EQ(t.pieces.size(), static_cast<std::size_t>(size)) << t.spec.key();
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(t.pieces[r].rank, r);
      EXPECT_TRUE(t.pieces[r].region.is_replicated());
      EXPECT_EQ(t.pieces[r].writer, r == 0) << t.spec.key() << " rank " << r;
    }
    const auto writers = t.writers();
    ASSERT_EQ(writers.size(), 1u);
    EXPECT_EQ(writers[0]->rank, 0);
  }
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, ReplicatedTensorRankZeroLacksIsWrittenByTheLowestHolder) {
  const int first_holder = size > 1 ? 1 : 0;
  if (rank >= first_holder)
    state.add_model("head", DType::kF32, {5}, replicated_whole({5}));
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 1u);
  const auto writers = layout.tensors[0].writers();
  ASSERT_EQ(writers.size(), 1u);
  EXPECT_EQ(writers[0]->rank, first_holder);
  EXPECT_EQ(layout.tensors[0].pieces.size(),
            static_cast<std::size_t>(size - first_holder));
}

TEST_F(Layout, ReplicatedGroupsEachWriteOnce) {
  // Ranks pair up (0,1), (2,3): each pair holds one dim-0 shard, replicated
  // within the pair (data parallel over tensor parallel). The lower rank of
  // each pair writes.
  const int groups = (size + 1) / 2;
  const Shape shape{9, 2};
  state.add_model("w", DType::kF64, shape,
                  dim0_shard(shape, rank / 2, groups).replicated());
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 1u);
  const auto& t = layout.tensors[0];
  ASSERT_EQ(t.pieces.size(), static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r)
    EXPECT_EQ(t.pieces[r].writer, r % 2 == 0) << "rank " << r;
  std::uint64_t written = 0;
  for (const auto* p : t.writers()) written += p->region.elements();
  EXPECT_EQ(written, 18u);
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, MixedPartitionsKeepRankZerosOrder) {
  // Rank 0 adds a, b, c, d; the other ranks add them in reverse. Ranks from 1
  // on also hold "late", which rank 0 lacks: it comes after rank 0's tensors.
  const Shape s{6, 4};
  auto add_a = [&] {
    state.add_model("a", DType::kF32, s, dim0_shard(s, rank, size));
  };
  auto add_b = [&] {
    state.add_model("b", DType::kF32, s, zero_flat_shard(s, rank, size));
  };
  auto add_c = [&] {
    state.add_model("c", DType::kI64, {3}, replicated_whole({3}));
  };
  auto add_d = [&] {
    state.add_optimizer("a", "exp_avg", DType::kF32, s,
                        zero_flat_shard(s, rank, size));
  };
  if (rank == 0) {
    add_a();
    add_b();
    add_c();
    add_d();
  } else {
    add_d();
    add_c();
    add_b();
    add_a();
    if (rank == 1)
      state.add_model("late", DType::kU8, {2, 2}, Region::whole({2, 2}));
  }
  const GlobalLayout layout = exchange();
  std::vector<std::string> keys;
  for (const auto& t : layout.tensors) keys.push_back(t.spec.key());
  std::vector<std::string> want = {"model/a", "model/b", "model/c",
                                   "optimizer/a/exp_avg"};
  if (size > 1) want.push_back("model/late");
  EXPECT_EQ(keys, want);
  EXPECT_EQ(layout.find("model/c"), 2);
  EXPECT_EQ(layout.find("optimizer/a/exp_avg"), 3);
  EXPECT_EQ(layout.find("model/nope"), -1);
  expect_pieces(layout.tensors[0], size, dim0_shard);
  expect_pieces(layout.tensors[1], size, zero_flat_shard);
  EXPECT_EQ(layout.tensors[2].writers().size(), 1u);
  if (size > 1) {
    ASSERT_EQ(layout.tensors[4].pieces.size(), 1u);
    EXPECT_EQ(layout.tensors[4].pieces[0].rank, 1);
  }
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, PartlySharedOrdersMatchByKey) {
  // Rank 0: a, b. Rank 1: a, b, x (matched in place, then a new one).
  // Rank 2: a, x, b (x and b out of place). Rank 3: a, b, x again, where x
  // sits at the place rank 1 gave it.
  const Shape s{8, 2};
  const auto add = [&](const std::string& name) {
    state.add_model(name, DType::kF32, s, dim0_shard(s, rank, size));
  };
  const std::vector<std::vector<std::string>> orders = {
      {"a", "b"}, {"a", "b", "x"}, {"a", "x", "b"}, {"a", "b", "x"}};
  for (const auto& name : orders[std::min(rank, 3)]) add(name);
  // Rank 0 lacks x, so not all of it is covered: the gather alone.
  const GlobalLayout layout = gather_layout(state, MPI_COMM_WORLD);
  std::vector<std::string> keys;
  for (const auto& t : layout.tensors) keys.push_back(t.spec.key());
  std::vector<std::string> want_keys = {"model/a", "model/b"};
  if (size > 1) want_keys.push_back("model/x");
  EXPECT_EQ(keys, want_keys);
  for (const auto& t : layout.tensors) {
    std::vector<int> ranks;
    for (const auto& p : t.pieces) ranks.push_back(p.rank);
    std::vector<int> want;
    for (int r = 0; r < size; ++r) {
      const auto& mine = orders[std::min(r, 3)];
      if (std::find(mine.begin(), mine.end(), t.spec.name) != mine.end()) want.push_back(r);
    }
    EXPECT_EQ(ranks, want) << t.spec.key();
  }
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, EmptyStateAndZeroSizeTensors) {
  EXPECT_TRUE(exchange().tensors.empty());
  // Every rank holds all of a zero-size tensor: no element is held twice.
  state.add_model("empty", DType::kF32, {0, 4}, Region::whole({0, 4}));
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 1u);
  EXPECT_TRUE(layout.tensors[0].pieces.empty());  // nothing to write
  // The gather for a load lists the tensor too, with no piece.
  const GlobalLayout asked = gather_layout(state, MPI_COMM_WORLD);
  ASSERT_EQ(asked.tensors.size(), 1u);
  EXPECT_TRUE(asked.tensors[0].pieces.empty());
}

TEST_F(Layout, ZeroStyleSlicesOfManyRanksKeepOnlyTheHeldPieces) {
  // 3 elements in slices of ceil(3 / size): at 4 ranks, rank 3 holds none;
  // 2 elements held by rank 0 alone as a flat range, the others empty.
  state.add_optimizer("w", "exp_avg", DType::kF32, {3}, zero_flat_shard({3}, rank, size));
  state.add_model("owned", DType::kI64, {2}, Region::flat(FlatRange{0, rank == 0 ? 2u : 0u}));
  const GlobalLayout layout = exchange();
  ASSERT_EQ(layout.tensors.size(), 2u);
  expect_pieces(layout.tensors[0], size, zero_flat_shard);
  ASSERT_EQ(layout.tensors[1].pieces.size(), 1u);
  EXPECT_EQ(layout.tensors[1].pieces[0].rank, 0);
  EXPECT_TRUE(same_on_all_ranks(describe(layout)));
}

TEST_F(Layout, RanksOfRankZerosListAndOfTheirOwnMix) {
  // Ranks 0 and 2 list "a" alone (rank 0's list: they send their non-empty
  // regions only). Odd ranks also list "x", held by rank 1 alone, and "z",
  // of no elements: rank 1 sends that list, rank 3 names rank 1's.
  state.add_model("a", DType::kF32, {2, 3}, dim0_shard({2, 3}, rank, size));
  if (rank % 2 == 1) {
    state.add_model("x", DType::kU8, {4}, Region::flat(FlatRange{0, rank == 1 ? 4u : 0u}));
    state.add_model("z", DType::kU8, {0}, Region::whole({0}));
  }
  for (const bool gather : {false, true}) {
    const GlobalLayout layout = gather ? gather_layout(state, MPI_COMM_WORLD) : exchange();
    ASSERT_EQ(layout.tensors.size(), size > 1 ? 3u : 1u);
    expect_pieces(layout.tensors[0], size, dim0_shard);
    if (size > 1) {
      EXPECT_EQ(layout.tensors[1].spec.key(), "model/x");
      ASSERT_EQ(layout.tensors[1].pieces.size(), 1u);
      EXPECT_EQ(layout.tensors[1].pieces[0].rank, 1);
      EXPECT_EQ(layout.tensors[2].spec.key(), "model/z");
      EXPECT_TRUE(layout.tensors[2].pieces.empty());
    }
    EXPECT_TRUE(same_on_all_ranks(describe(layout)));
  }
}

// ---- The layout an engine keeps from save to save (LayoutCache) ------------

TEST_F(Layout, TheKeptLayoutServesUntilAnyRanksTensorsChange) {
  const Shape s{8, 4};
  state.add_model("a", DType::kF32, s, dim0_shard(s, rank, size));
  LayoutCache cache;
  std::string first;
  run_within(60s, [&] { first = describe(*cache.exchange(state, MPI_COMM_WORLD)); });
  EXPECT_FALSE(cache.reused());
  EXPECT_EQ(first, describe(exchange()));
  run_within(60s, [&] { EXPECT_EQ(describe(*cache.exchange(state, MPI_COMM_WORLD)), first); });
  EXPECT_TRUE(cache.reused());

  // The last rank alone adds a tensor: every rank exchanges again.
  if (rank == size - 1) state.add_model("b", DType::kU8, {2}, Region::whole({2}));
  std::string changed;
  run_within(60s, [&] { changed = describe(*cache.exchange(state, MPI_COMM_WORLD)); });
  EXPECT_FALSE(cache.reused());
  EXPECT_EQ(changed, describe(exchange()));
  EXPECT_NE(changed, first);

  // Same tensors, regions moved: rank r now holds what rank r+1 held.
  State moved;
  moved.add_model("a", DType::kF32, s, dim0_shard(s, (rank + 1) % size, size));
  if (rank == size - 1) moved.add_model("b", DType::kU8, {2}, Region::whole({2}));
  std::string after_move;
  run_within(60s, [&] { after_move = describe(*cache.exchange(moved, MPI_COMM_WORLD)); });
  EXPECT_EQ(cache.reused(), size == 1);
  state = std::move(moved);
  EXPECT_EQ(after_move, describe(exchange()));
  EXPECT_TRUE(same_on_all_ranks(after_move));
}

TEST_F(Layout, ALayoutOfTooManyPiecesIsNotKept) {
  const Shape s{8, 4};
  state.add_model("a", DType::kF32, s, dim0_shard(s, rank, size));
  state.add_model("b", DType::kF32, s, zero_flat_shard(s, rank, size));
  const auto pieces = static_cast<std::uint64_t>(2 * size);
  for (const std::uint64_t limit : {pieces - 1, pieces}) {
    LayoutCache cache(limit);
    std::string first, second;
    run_within(60s, [&] { first = describe(*cache.exchange(state, MPI_COMM_WORLD)); });
    run_within(60s, [&] { second = describe(*cache.exchange(state, MPI_COMM_WORLD)); });
    EXPECT_EQ(cache.reused(), limit >= pieces) << "limit " << limit;
    EXPECT_EQ(first, second);
    EXPECT_EQ(first, describe(exchange()));
  }
}

TEST_F(Layout, AFailedExchangeIsNotKept) {
  if (size < 2) GTEST_SKIP() << "needs two ranks to overlap";
  state.add_model("w", DType::kF32, {4, 4}, Region::whole({4, 4}));  // overlaps
  LayoutCache cache;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const Caught c = catch_error(
        [&] { run_within(60s, [&] { (void)cache.exchange(state, MPI_COMM_WORLD); }); });
    EXPECT_TRUE(test::is_error(c, ErrorCode::kMismatch, {"\"model/w\"", "overlap"}))
        << "attempt " << attempt << ": " << c.message;
    EXPECT_FALSE(cache.reused());
  }
}

// ---- Errors, identical on every rank ----------------------------------------

TEST_F(Layout, DtypeDisagreementNamesTheTensor) {
  if (size < 2) GTEST_SKIP() << "needs two ranks to disagree";
  state.add_model("ok", DType::kF32, {4}, replicated_whole({4}));
  state.add_model("w", rank == size - 1 ? DType::kF64 : DType::kF32, {8, 2},
                  dim0_shard({8, 2}, rank, size));
  const Caught c = exchange_error();
  EXPECT_TRUE(test::is_error(c, ErrorCode::kMismatch,
                             {"\"model/w\"", "F32[8,2]", "F64[8,2]",
                              "rank " + std::to_string(size - 1)}));
}

TEST_F(Layout, ShapeDisagreementNamesTheTensor) {
  if (size < 2) GTEST_SKIP() << "needs two ranks to disagree";
  const Shape shape = rank == 1 ? Shape{8, 3} : Shape{8, 2};
  state.add_optimizer("w", "exp_avg", DType::kF32, shape,
                      zero_flat_shard(shape, rank, size));
  const Caught c = exchange_error();
  EXPECT_TRUE(
      test::is_error(c, ErrorCode::kMismatch,
                     {"\"optimizer/w/exp_avg\"", "[8,2]", "[8,3]", "rank 1"}));
}

TEST_F(Layout, OverlappingRegionsNameTheTensorAndRanks) {
  if (size < 2) GTEST_SKIP() << "needs two ranks to overlap";
  // Every rank claims the whole tensor without marking it replicated.
  state.add_model("w", DType::kF32, {4, 4}, Region::whole({4, 4}));
  Caught c = exchange_error();
  EXPECT_TRUE(test::is_error(
      c, ErrorCode::kMismatch,
      {"\"model/w\"", "ranks 0 and 1", "overlap", "replicated"}));

  // Shards that overlap by one row: rank 1 also takes rank 0's last row.
  State shards;
  Region mine = dim0_shard({8, 2}, rank, size);
  if (rank == 1) {
    Box box = mine.as_box();
    box.offset[0] -= 1;
    box.extent[0] += 1;
    mine = Region::box(box);
  }
  shards.add_model("v", DType::kF32, {8, 2}, mine);
  state = std::move(shards);
  c = exchange_error();
  EXPECT_TRUE(test::is_error(c, ErrorCode::kMismatch,
                             {"\"model/v\"", "ranks 0 and 1"}));
}

TEST_F(Layout, OverlapOfFlatRangesAndBoxes) {
  if (size < 2) GTEST_SKIP() << "needs two ranks to overlap";
  // Rank 0 holds flat [0, 13) of a 4x5 tensor; the others split rows 2..3,
  // and rank 1 holds row 1 too, which rank 0's range partly covers.
  const Shape s{4, 5};
  Region mine = Region::flat(FlatRange{0, 13});
  if (rank > 0) {
    const auto [begin, end] = test::even_split(2, rank - 1, size - 1);
    mine = Region::box(Box{{2 + begin, 0}, {end - begin, 5}});
    if (rank == 1) mine = Region::box(Box{{1, 0}, {1 + end - begin, 5}});
  }
  state.add_model("m", DType::kF32, s, mine);
  const Caught c = exchange_error();
  EXPECT_TRUE(
      test::is_error(c, ErrorCode::kMismatch, {"\"model/m\"", "overlap"}));
}

TEST_F(Layout, DifferingReplicatedRegionsOverlap) {
  if (size < 2) GTEST_SKIP() << "needs two ranks";
  // "Replicated" promises identical regions; these differ, so both would be
  // written, and they overlap.
  const Region mine = rank == 0 ? Region::box(Box{{0, 0}, {6, 2}}).replicated()
                                : replicated_whole({10, 2});
  state.add_model("r", DType::kF32, {10, 2}, mine);
  const Caught c = exchange_error();
  EXPECT_TRUE(
      test::is_error(c, ErrorCode::kMismatch, {"\"model/r\"", "overlap"}));
}

TEST_F(Layout, PlainScalarHeldByEveryRankOverlaps) {
  if (size < 2) GTEST_SKIP() << "needs two ranks";
  state.add_model("lr", DType::kF64, {}, Region::whole({}));
  const Caught c = exchange_error();
  EXPECT_TRUE(
      test::is_error(c, ErrorCode::kMismatch, {"\"model/lr\"", "overlap"}));
}

TEST_F(Layout, IncompleteCoverageNamesTheTensorAndCounts) {
  // The ranks hold size of size+1 dim-0 shards of 12 rows x 3: the last
  // shard's rows are nobody's.
  const Shape s{12, 3};
  state.add_model("ok", DType::kF32, s, dim0_shard(s, rank, size));
  state.add_model("w", DType::kF32, s, dim0_shard(s, rank, size + 1));
  const auto [lost_begin, lost_end] = test::even_split(12, size, size + 1);
  const std::uint64_t covered = 36 - 3 * (lost_end - lost_begin);
  const Caught c = exchange_error();
  EXPECT_TRUE(test::is_error(
      c, ErrorCode::kMismatch,
      {"\"model/w\"", "cover " + std::to_string(covered) + " of its 36",
       "elements"}));
}

TEST_F(Layout, IncompleteFlatCoverage) {
  // Flat ranges that stop one element short of the end.
  const Shape s{5, 5};
  const auto [begin, end] = test::even_split(24, rank, size);
  state.add_optimizer("p", "exp_avg", DType::kF32, s,
                      Region::flat(FlatRange{begin, end}));
  const Caught c = exchange_error();
  EXPECT_TRUE(
      test::is_error(c, ErrorCode::kMismatch,
                     {"\"optimizer/p/exp_avg\"", "cover 24 of its 25"}));
}

TEST_F(Layout, ATensorNobodyCoversWhenRankZeroLacksIt) {
  // Only the last rank holds "tail", and only half of it.
  if (rank == size - 1)
    state.add_model("tail", DType::kF32, {4}, Region::box(Box{{0}, {2}}));
  const Caught c = exchange_error();
  EXPECT_TRUE(test::is_error(c, ErrorCode::kMismatch,
                             {"\"model/tail\"", "cover 2 of its 4"}));
}

}  // namespace
}  // namespace floe
