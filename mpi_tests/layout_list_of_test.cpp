// Which rank's tensor list each rank names in the layout exchange
// (layout_wire::list_of): ranks of rank 0's list name rank 0, and of the
// ranks that share another list only the first sends it.
#include <gtest/gtest.h>

#include "core/comm.hpp"
#include "core/layout_wire.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

TEST(LayoutListOf, RanksOfOneListNameTheFirstOfThem) {
  const int rank = world_rank();
  // Even ranks list rank 0's "a"; odd ranks also list "x" (a second list,
  // sent by rank 1); rank 5 lists "y" instead (a third, its own).
  State state;
  state.add_model("a", DType::kF32, {4}, Region::flat(FlatRange{0, rank == 0 ? 4u : 0u}));
  if (rank % 2 == 1) {
    state.add_model(rank == 5 ? "y" : "x", DType::kU8, {2},
                    Region::flat(FlatRange{0, rank == 1 || rank == 5 ? 2u : 0u}));
  }
  const std::string mine = layout_wire::encode(state);
  const std::string first =
      Comm(MPI_COMM_WORLD).broadcast_bytes(std::string(layout_wire::specs_of(mine)), 0);
  const int expected = rank % 2 == 0 ? 0 : rank == 1 || rank == 5 ? -1 : 1;
  EXPECT_EQ(layout_wire::list_of(mine, first, MPI_COMM_WORLD), expected) << "rank " << rank;
}

}  // namespace
}  // namespace floe::test
