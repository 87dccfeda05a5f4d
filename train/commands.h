// The subcommands of the xgan tool. Each file train/cmd_<name>.cpp adds one to the CLI11 app and
// runs it; main.cpp only wires them together and turns exceptions into clear messages.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace xgan::cli {

// Each returns the callback that runs the subcommand once parsing succeeded (exit code).
using Run = std::function<int()>;
Run add_train(CLI::App& app);    // train/cmd_train.cpp: xgan train
Run add_sample(CLI::App& app);   // train/cmd_train.cpp: xgan sample
Run add_step(CLI::App& app);     // train/cmd_step.cpp: xgan step
Run add_explain(CLI::App& app);  // train/cmd_explain.cpp: xgan explain

}  // namespace xgan::cli
