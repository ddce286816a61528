// Callbacks around save() and load(): when they run, and what a callback
// that throws on one rank does to the call (fails it on every rank).
#include <cerrno>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

using Rig = EngineRig;

class Callbacks : public ::testing::TestWithParam<std::string> {};

TEST_P(Callbacks, CallbacksRunAroundSaveAndLoad) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  std::vector<std::string> events;
  auto note = [&](const char* what) {
    return [&events, what](CheckpointEngine& e) {
      events.push_back(std::string(what) + "@" + std::to_string(e.trainer().progress().global_step));
    };
  };
  rig.engine->add_callback(CallbackEvent::kPreSave, note("pre-save"));
  rig.engine->add_callback(CallbackEvent::kPostSave, note("post-save"));
  rig.engine->add_callback(CallbackEvent::kPreLoad, note("pre-load"));
  rig.engine->add_callback(CallbackEvent::kPostLoad, note("post-load"));
  rig.save_at(4);
  rig.engine->load();
  auto faulty = std::make_shared<FaultyFileSystem>();
  faulty->add_rule({FsOp::kDataWrite, "", ENOSPC, 0, 1});
  rig.engine->set_file_system(faulty);
  EXPECT_TRUE(throws_error([&] { rig.save_at(5); }, ErrorCode::kIo));
  // A failed save runs pre-save only: post-save means "committed".
  EXPECT_EQ(events, (std::vector<std::string>{"pre-save@4", "post-save@4", "pre-load@4",
                                              "post-load@4", "pre-save@5"}));
}

// A callback that throws on one rank (the last) fails that call on every
// rank, naming the rank and the event; before, the others went on into the
// call's next collective and waited there for ever. A failed pre-save
// writes nothing; a failed post-save leaves its checkpoint committed.
TEST_P(Callbacks, ACallbackThrowingOnOneRankFailsTheCallOnEveryRank) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  Rig rig(dir, GetParam());
  const int last = world_size() - 1;
  const std::string who = world_size() > 1 ? "rank " + std::to_string(last) + ": " : "";
  std::optional<CallbackEvent> armed;
  for (CallbackEvent event : {CallbackEvent::kPreSave, CallbackEvent::kPostSave,
                              CallbackEvent::kPreLoad, CallbackEvent::kPostLoad}) {
    rig.engine->add_callback(event, [&armed, event, last](CheckpointEngine&) {
      if (armed != event || world_rank() != last) return;
      if (event == CallbackEvent::kPreLoad) {
        throw Error(ErrorCode::kNotFound, "no tokenizer next to the checkpoint");
      }
      throw std::runtime_error("upload quota exceeded");
    });
  }
  rig.save_at(1);

  armed = CallbackEvent::kPreSave;
  EXPECT_TRUE(throws_error([&] { rig.save_at(2); }, ErrorCode::kInternal,
                           {who + "pre-save callback: upload quota exceeded"}));
  EXPECT_EQ(listing(dir), "global_step_1 latest ");

  armed = CallbackEvent::kPostSave;
  EXPECT_TRUE(throws_error([&] { rig.save_at(3); }, ErrorCode::kInternal,
                           {who + "post-save callback: upload quota exceeded"}));
  EXPECT_EQ(slurp(dir / "latest"), "global_step_3\n");

  armed = CallbackEvent::kPreLoad;  // a floe::Error keeps its code
  EXPECT_TRUE(throws_error([&] { rig.engine->load(); }, ErrorCode::kNotFound,
                           {who + "pre-load callback: no tokenizer next to the checkpoint"}));
  armed = CallbackEvent::kPostLoad;
  EXPECT_TRUE(throws_error([&] { rig.engine->load(); }, ErrorCode::kInternal,
                           {who + "post-load callback: upload quota exceeded"}));

  armed.reset();  // and the engine goes on working
  rig.save_at(4);
  EXPECT_EQ(rig.engine->load().step, 4);
}

// A callback that makes its own collective call, agreed on inside (as a
// Floe call's errors are): the call's error names the failing rank once,
// not "rank 0 (and N other ranks): ..." around it.
TEST_P(Callbacks, AnErrorAgreedOnInsideACallbackNamesItsRankOnce) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  const int last = world_size() - 1;
  const Comm comm(MPI_COMM_WORLD);
  rig.engine->add_callback(CallbackEvent::kPostSave, [&](CheckpointEngine&) {
    collectively(comm, [&] {
      if (world_rank() == last) throw Error(ErrorCode::kIo, "no space for the upload");
    });
  });
  const std::string who = world_size() > 1 ? "rank " + std::to_string(last) + ": " : "";
  const Caught caught = catch_error([&] { rig.save_at(1); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo)) << caught.message;
  EXPECT_EQ(caught.message, "post-save callback: " + who + "no space for the upload");
  EXPECT_TRUE(same_on_all_ranks(caught.message));
}

INSTANTIATE_TEST_SUITE_P(Engines, Callbacks, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
