// The xgan command-line tool: wires the subcommands of train/cmd_*.cpp together and turns any
// error into a one-line message and a non-zero exit code.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "train/commands.h"

namespace {

std::string version_text() {
  std::string s = std::string("xgan ") + XGAN_VERSION + "\n";
  if (!xgan::cuda::compiled()) {
    s += "CUDA: not compiled in (CPU backend only)\n";
  } else {
    int n = xgan::cuda::device_count();
    s += "CUDA: compiled in; " +
         (n > 0 ? std::to_string(n) + " GPU(s), first: " + xgan::cuda::device_name()
                : std::string("no GPU visible")) +
         "\n";
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "xgan: train GANs whose generator is guided by explanations (XAI maps) of the discriminator,\n"
      "after Rozendo et al., \"X-GAN\", ICEIS 2024. A from-scratch C++20/CUDA autodiff engine."};
  app.set_version_flag(
      "--version", [] { return version_text(); }, "Print the version and the CUDA status, then exit");
  app.require_subcommand(0, 1);
  app.footer("Run `xgan <subcommand> --help` for the options of each subcommand.");
  std::vector<std::pair<CLI::App*, xgan::cli::Run>> commands;
  auto add = [&](auto adder) {
    size_t before = app.get_subcommands({}).size();
    xgan::cli::Run run = adder(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(run));
  };
  add(xgan::cli::add_train);
  add(xgan::cli::add_sample);
  add(xgan::cli::add_step);
  add(xgan::cli::add_explain);
  add(xgan::cli::add_bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xgan: error: %s\n", e.what());
    return 1;
  }
  std::fputs(app.help().c_str(), stdout);
  return 0;
}
