// diagnose -- sampler diagnostics for Stan sampler CSV files.
//
// Part of the bayesglmm toolchain: a CmdStan-compatible `bin/diagnose`
// (see docs: cmdstan-contract.md, section A.4), written for this project.
//
// Usage:
//   diagnose <chain1.csv> [<chain2.csv> ...]
//
// Prints free-text checks of the post-warmup draws:
//   * tree depth: transitions whose treedepth__ reached max_depth (read from
//     each file's configuration header, default 10);
//   * divergences: transitions with divergent__ != 0;
//   * E-BFMI per chain (mean squared energy change over energy variance),
//     flagged below 0.3;
//   * effective sample size (split chains) of every model quantity, flagged
//     below min(100 * chains, 10% of the draws);
//   * split R-hat of every model quantity, flagged above 1.05.
// Exit status 0 when the files could be read (whatever the findings),
// non-zero with a message on unreadable input.

#include <stan/analyze/mcmc/compute_effective_sample_size.hpp>
#include <stan/analyze/mcmc/compute_potential_scale_reduction.hpp>
#include "stan_csv.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace bgtools;


const double NaN = std::numeric_limits<double>::quiet_NaN();

bool is_sampler_column(const std::string& name) {
  return name.size() > 2 && name.compare(name.size() - 2, 2, "__") == 0;
}

int column_index(const chain_file& f, const std::string& name) {
  for (size_t j = 0; j < f.columns.size(); ++j)
    if (f.columns[j] == name) return static_cast<int>(j);
  return -1;
}

std::string fmt(double v, int prec) {
  std::ostringstream out;
  out << std::setprecision(prec) << v;
  return out.str();
}

std::string percent(size_t k, size_t n) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << (n ? 100.0 * k / n : 0.0)
      << "%";
  return out.str();
}

// E-BFMI of one chain: mean squared change of energy between successive
// draws divided by the variance of the energy.
double ebfmi(const std::vector<double>& e) {
  size_t n = e.size();
  if (n < 3) return NaN;
  double mean = 0;
  for (double x : e) mean += x;
  mean /= n;
  double var = 0;
  for (double x : e) var += (x - mean) * (x - mean);
  var /= n;
  double diff2 = 0;
  for (size_t i = 1; i < n; ++i) diff2 += (e[i] - e[i - 1]) * (e[i] - e[i - 1]);
  diff2 /= (n - 1);
  if (!(var > 0)) return NaN;
  return diff2 / var;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: diagnose <chain1.csv> [<chain2.csv> ...]\n"
                   "Checks tree depth, divergences, E-BFMI, effective sample "
                   "size and split R-hat of Stan sampler output.\n";
      return 0;
    }
    files.push_back(a);
  }
  if (files.empty()) {
    std::cerr << "diagnose: no input CSV files given\n"
                 "Usage: diagnose <chain1.csv> [<chain2.csv> ...]\n";
    return 1;
  }

  std::vector<chain_file> chains;
  try {
    for (const auto& p : files) {
      chains.push_back(read_chain_file(p));
      if (chains.size() > 1 && chains.back().columns != chains[0].columns)
        throw std::runtime_error(p + ": CSV columns differ from those of "
                                 + chains[0].path);
    }
  } catch (const std::exception& e) {
    std::cerr << "diagnose: error reading input: " << e.what() << "\n";
    return 1;
  }

  std::ostream& o = std::cout;
  o << "Processing csv files: ";
  for (size_t c = 0; c < chains.size(); ++c)
    o << (c ? ", " : "") << chains[c].path;
  o << "\n\n";

  size_t total = 0;
  for (const auto& c : chains) total += c.draws.size();
  if (total == 0) {
    o << "No post-warmup draws found: nothing to check.\n";
    return 0;
  }

  bool problems = false;
  const chain_file& first = chains[0];
  bool fixed = first.fixed_param
               || (column_index(first, "treedepth__") < 0
                   && column_index(first, "divergent__") < 0
                   && column_index(first, "energy__") < 0);

  if (fixed) {
    o << "Draws come from the fixed_param sampler (no HMC diagnostic columns):\n"
         "tree depth, divergence and E-BFMI checks do not apply.\n\n";
  } else {
    // --- tree depth (NUTS only) ---
    int td = column_index(first, "treedepth__");
    if (td >= 0) {
      o << "Checking sampler transitions for tree depth saturation.\n";
      size_t hit = 0;
      std::vector<long> depths;
      for (const auto& c : chains) {
        long max_depth = config_long(c, "max_depth", 10);
        depths.push_back(max_depth);
        for (const auto& r : c.draws)
          if (r[td] >= max_depth) ++hit;
      }
      long d0 = depths[0];
      bool same_depth = std::all_of(depths.begin(), depths.end(),
                                    [d0](long d) { return d == d0; });
      if (hit > 0) {
        problems = true;
        o << hit << " of " << total << " (" << percent(hit, total)
          << ") transitions reached the maximum tree depth";
        if (same_depth) o << " of " << d0 << " (2^" << d0 << " leapfrog steps)";
        o << ".\n"
             "Trajectories cut short by this limit explore the posterior slowly;\n"
             "consider raising max_depth (and check the parameterisation).\n\n";
      } else {
        o << "Tree depth satisfactory: no transition reached max_depth";
        if (same_depth) o << " = " << d0;
        o << ".\n\n";
      }
    } else {
      o << "No treedepth__ column (not a NUTS run): tree depth not checked.\n\n";
    }

    // --- divergences ---
    o << "Checking sampler transitions for divergences.\n";
    int dv = column_index(first, "divergent__");
    size_t ndiv = 0;
    if (dv >= 0)
      for (const auto& c : chains)
        for (const auto& r : c.draws)
          if (r[dv] != 0) ++ndiv;
    if (ndiv > 0) {
      problems = true;
      o << ndiv << " of " << total << " (" << percent(ndiv, total)
        << ") transitions ended with a divergence.\n"
           "Divergent transitions mean the sampler could not follow the posterior\n"
           "geometry faithfully and the estimates may be biased. Try a larger\n"
           "adapt delta (closer to 1); if divergences remain, reparameterise the\n"
           "model (e.g. non-centred random effects).\n\n";
    } else {
      o << "No divergent transitions found.\n\n";
    }

    // --- E-BFMI ---
    o << "Checking E-BFMI (energy Bayesian fraction of missing information).\n";
    int en = column_index(first, "energy__");
    if (en < 0) {
      o << "No energy__ column: E-BFMI not computed.\n\n";
    } else {
      std::vector<std::pair<size_t, double>> low;
      for (size_t c = 0; c < chains.size(); ++c) {
        std::vector<double> e;
        for (const auto& r : chains[c].draws) e.push_back(r[en]);
        double b = ebfmi(e);
        if (std::isfinite(b) && b < 0.3) low.push_back({c, b});
      }
      if (!low.empty()) {
        problems = true;
        o << "E-BFMI below the threshold of 0.3 in the following chain(s):\n";
        for (auto& lb : low)
          o << "  chain " << lb.first + 1 << " (" << chains[lb.first].path
            << "): E-BFMI = " << fmt(lb.second, 3) << "\n";
        o << "A low E-BFMI means the momentum resampling explores the energy\n"
             "distribution poorly (often heavy tails or funnels); reparameterising\n"
             "the model may help.\n\n";
      } else {
        o << "E-BFMI satisfactory for all chains.\n\n";
      }
    }
  }

  // --- effective sample size and split R-hat of model quantities ---
  std::vector<const chain_file*> used;
  for (const auto& c : chains)
    if (!c.draws.empty()) used.push_back(&c);
  size_t min_len = used[0]->draws.size();
  for (auto* c : used) min_len = std::min(min_len, c->draws.size());

  double ess_threshold = std::min(100.0 * used.size(), 0.1 * total);
  std::vector<std::pair<std::string, double>> low_ess, high_rhat;
  size_t n_params = 0, n_undefined = 0;
  std::vector<std::vector<double>> col(used.size());
  for (size_t j = 0; j < first.columns.size(); ++j) {
    if (is_sampler_column(first.columns[j])) continue;
    ++n_params;
    std::vector<const double*> ptrs;
    std::vector<size_t> sizes;
    for (size_t c = 0; c < used.size(); ++c) {
      col[c].resize(used[c]->draws.size());
      for (size_t r = 0; r < used[c]->draws.size(); ++r)
        col[c][r] = used[c]->draws[r][j];
      ptrs.push_back(col[c].data());
      sizes.push_back(col[c].size());
    }
    double ess = min_len >= 4
                     ? stan::analyze::compute_split_effective_sample_size(ptrs, sizes)
                     : NaN;
    double rhat
        = min_len >= 2
              ? stan::analyze::compute_split_potential_scale_reduction(ptrs, sizes)
              : NaN;
    std::string name = pretty_name(first.columns[j]);
    if (!std::isfinite(ess) && !std::isfinite(rhat)) {
      ++n_undefined;
      continue;
    }
    if (std::isfinite(ess) && ess < ess_threshold) low_ess.push_back({name, ess});
    if (std::isfinite(rhat) && rhat > 1.05) high_rhat.push_back({name, rhat});
  }

  o << "Checking effective sample size (split chains) of " << n_params
    << " model quantit" << (n_params == 1 ? "y" : "ies") << ".\n";
  const bool none_defined = n_undefined == n_params;
  if (n_params == 0 || none_defined) {
    o << "Nothing to check: no model quantity with a defined effective sample size.\n\n";
  } else if (min_len < 4) {
    o << "Too few draws per chain (" << min_len
      << ") to estimate effective sample sizes.\n\n";
  } else if (!low_ess.empty()) {
    problems = true;
    o << "The following quantities have an effective sample size below "
      << fmt(ess_threshold, 4) << ":\n";
    for (auto& p : low_ess) o << "  " << p.first << ": N_Eff = " << fmt(p.second, 3) << "\n";
    o << "Estimates of their posterior summaries may be unreliable: run longer\n"
         "chains or improve the parameterisation.\n\n";
  } else {
    o << "Effective sample size satisfactory (at least " << fmt(ess_threshold, 4)
      << " for every quantity where it is defined).\n\n";
  }

  o << "Checking split R-hat of " << n_params << " model quantit"
    << (n_params == 1 ? "y" : "ies") << ".\n";
  if (!high_rhat.empty()) {
    problems = true;
    o << "The following quantities have split R-hat greater than 1.05:\n";
    for (auto& p : high_rhat) o << "  " << p.first << ": R_hat = " << fmt(p.second, 4) << "\n";
    o << "The chains have not mixed (or not converged to the same distribution):\n"
         "run longer chains, check for multimodality, or reparameterise.\n\n";
  } else if (n_params == 0 || none_defined) {
    o << "Nothing to check: no model quantity with a defined split R-hat.\n\n";
  } else if (min_len < 2) {
    o << "Too few draws per chain to compute split R-hat.\n\n";
  } else {
    o << "Split R-hat satisfactory (at most 1.05) for every quantity where it is "
         "defined.\n\n";
  }
  if (n_undefined > 0)
    o << n_undefined << " quantit" << (n_undefined == 1 ? "y is" : "ies are")
      << " constant or not finite; N_Eff and R-hat are undefined for "
      << (n_undefined == 1 ? "it" : "them") << ".\n\n";

  if (problems)
    o << "Processing complete: potential problems were reported above.\n";
  else
    o << "Processing complete, no problems detected.\n";
  return 0;
}
