// The subcommands of the xgan tool. Each file train/cmd_<name>.cpp adds one to the CLI11 app and
// runs it; main.cpp only wires them together and turns exceptions into clear messages.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace xgan::cli {

// Each returns the callback that runs the subcommand once parsing succeeded (exit code).
using Run = std::function<int()>;
Run add_train(CLI::App& app);             // train/cmd_train.cpp: xgan train
Run add_sample(CLI::App& app);            // train/cmd_train.cpp: xgan sample
Run add_step(CLI::App& app);              // train/cmd_step.cpp: xgan step
Run add_explain(CLI::App& app);           // train/cmd_explain.cpp: xgan explain
Run add_train_classifier(CLI::App& app);  // train/cmd_classifier.cpp: xgan train-classifier
Run add_eval(CLI::App& app);              // train/cmd_eval.cpp: xgan eval
Run add_fid(CLI::App& app);               // train/cmd_fid.cpp: xgan fid
Run add_bench(CLI::App& app);             // train/cmd_bench.cpp: xgan bench

// The four X-GAN guidance options shared by `train` and `step` (train/cli_xai.cpp): their names,
// valid values and help; the defaults are whatever the strings hold when this is called.
void add_xai_options(CLI::App* sub, std::string& xai, std::string& guidance, std::string& xai_bn,
                     std::string& xai_norm);

}  // namespace xgan::cli
