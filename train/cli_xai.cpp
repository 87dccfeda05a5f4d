// The X-GAN guidance options of `xgan train` and `xgan step`, declared once so both subcommands
// accept the same values with the same help (the values are parsed by xai/xai.h).
#include "train/commands.h"

namespace xgan::cli {

void add_xai_options(CLI::App* sub, std::string& xai, std::string& guidance, std::string& xai_bn,
                     std::string& xai_norm) {
  sub->add_option(
         "--xai", xai,
         "X-GAN guidance of the G step: explain D on the fakes (target T = sum_i D(fake_i), after the\n"
         "sigmoid for dcgan) with saliency |dT/dx|, inputxgrad x*dT/dx or deeplift (rescale rule,\n"
         "zero baseline), normalise the map to E in [1, 2] and weight dloss_G/dfake with it before\n"
         "it flows into G; none = plain GAN")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "saliency", "inputxgrad", "deeplift"}));
  sub->add_option("--guidance", guidance,
                  "How E weights g = dloss_G/dfake: elementwise (the paper's text: E * g) or as-coded (the\n"
                  "authors' code, (errG * E).backward(ones), which reduces to (sum of E over the batch) * g)")
      ->capture_default_str()
      ->check(CLI::IsMember({"elementwise", "as-coded"}));
  sub->add_option(
         "--xai-bn", xai_bn,
         "D's batch norm while explaining: captum (train mode as the authors' captum call: batch\n"
         "statistics over the N fakes, or the 2N batch [fakes; zeros] for deeplift, and D's running\n"
         "statistics are updated) or eval (running statistics, nothing updated)")
      ->capture_default_str()
      ->check(CLI::IsMember({"eval", "captum"}));
  sub->add_option("--xai-norm", xai_norm,
                  "Min-max normalisation of the map: batch (over the whole batch tensor, the authors') or\n"
                  "sample (over C, H, W of each image); a constant map gives E = 1")
      ->capture_default_str()
      ->check(CLI::IsMember({"batch", "sample"}));
}

}  // namespace xgan::cli
