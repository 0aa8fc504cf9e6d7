// Human and tc(8) renderings of a plan.
#pragma once

#include <string>

#include "flowshaper/plan/planner.hpp"

namespace flowshaper::plan {

// A readable tree: classes with their rates and what they are for, then the classifier.
std::string render_text(const DevicePlan& plan);

// A script `tc -batch` accepts that builds the same objects from scratch on a device whose root
// qdisc is the kernel's default (what a person would otherwise type).
std::string render_tc_batch(const DevicePlan& plan);

}  // namespace flowshaper::plan
