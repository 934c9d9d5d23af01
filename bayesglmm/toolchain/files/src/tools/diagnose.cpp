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
#include <stan/io/stan_csv_reader.hpp>

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

// ---------------------------------------------------------------------------
// Reading Stan sampler CSV files
// ---------------------------------------------------------------------------

struct chain_file {
  std::string path;
  std::map<std::string, std::string> config;  // key = value pairs of the header
  std::vector<std::string> columns;            // raw CSV column names
  std::vector<std::vector<double>> warmup;     // rows of saved warmup draws
  std::vector<std::vector<double>> draws;      // rows of kept draws
  double warmup_seconds = 0;
  double sampling_seconds = 0;
  bool fixed_param = false;
};

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.push_back("");
  if (s.empty()) out.push_back("");
  return out;
}

bool parse_double(const std::string& token, double& value) {
  std::string t = trim(token);
  if (t.empty()) return false;
  errno = 0;
  char* end = nullptr;
  value = std::strtod(t.c_str(), &end);
  return end != nullptr && *end == '\0';
}

long config_long(const chain_file& f, const std::string& key, long dflt) {
  auto it = f.config.find(key);
  if (it == f.config.end()) return dflt;
  double v;
  if (it->second == "true") return 1;
  if (it->second == "false") return 0;
  if (!parse_double(it->second, v)) return dflt;
  return static_cast<long>(v);
}

std::string config_str(const chain_file& f, const std::string& key,
                       const std::string& dflt = "") {
  auto it = f.config.find(key);
  return it == f.config.end() ? dflt : it->second;
}

// Parses "<num> seconds (<phase>)" timing comment lines.
void parse_timing(const std::string& body, chain_file& f) {
  std::string s = body;
  size_t et = s.find("Elapsed Time:");
  if (et != std::string::npos) s = s.substr(et + 13);
  size_t sec = s.find(" seconds (");
  if (sec == std::string::npos) return;
  double v;
  if (!parse_double(s.substr(0, sec), v)) return;
  size_t close = s.find(')', sec);
  std::string phase = s.substr(sec + 10, close == std::string::npos
                                             ? std::string::npos
                                             : close - sec - 10);
  if (phase == "Warm-up")
    f.warmup_seconds += v;
  else if (phase == "Sampling")
    f.sampling_seconds += v;
}

chain_file read_chain_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open file " + path);
  chain_file f;
  f.path = path;
  std::string line;
  size_t lineno = 0;
  bool have_header = false;
  long adapt_rows = -1;  // data rows seen when "Adaptation terminated" appeared
  std::vector<std::vector<double>> rows;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    if (line[0] == '#') {
      std::string body = trim(line.substr(1));
      if (!have_header) {
        if (body.find("fixed_param") != std::string::npos) f.fixed_param = true;
        size_t eq = body.find(" = ");
        if (eq != std::string::npos) {
          std::string key = trim(body.substr(0, eq));
          std::string value = trim(body.substr(eq + 3));
          const std::string dflt = "(Default)";
          if (value.size() >= dflt.size()
              && value.compare(value.size() - dflt.size(), dflt.size(), dflt)
                     == 0)
            value = trim(value.substr(0, value.size() - dflt.size()));
          f.config[key] = value;
        }
      } else {
        if (adapt_rows < 0
            && body.find("Adaptation terminated") != std::string::npos)
          adapt_rows = static_cast<long>(rows.size());
        if (body.find(" seconds (") != std::string::npos) parse_timing(body, f);
      }
      continue;
    }
    if (!have_header) {
      for (const std::string& c : split(line, ',')) f.columns.push_back(trim(c));
      if (f.columns.empty() || f.columns[0].empty())
        throw std::runtime_error(path + ": empty CSV header at line "
                                 + std::to_string(lineno));
      have_header = true;
      continue;
    }
    std::vector<std::string> items = split(line, ',');
    if (items.size() != f.columns.size()) {
      std::ostringstream msg;
      msg << path << ", line " << lineno << ": expected " << f.columns.size()
          << " values, found " << items.size();
      throw std::runtime_error(msg.str());
    }
    std::vector<double> row(items.size());
    for (size_t j = 0; j < items.size(); ++j) {
      if (!parse_double(items[j], row[j])) {
        std::ostringstream msg;
        msg << path << ", line " << lineno << ": cannot parse value '"
            << trim(items[j]) << "' in column " << f.columns[j];
        throw std::runtime_error(msg.str());
      }
    }
    rows.push_back(std::move(row));
  }
  if (!have_header)
    throw std::runtime_error(path + ": no CSV header found (not a Stan CSV file)");
  if (config_str(f, "algorithm") == "fixed_param") f.fixed_param = true;

  // Number of saved warmup rows at the top of the draws: the rows before the
  // adaptation block when there is one, else counted from the configuration.
  // The fixed_param sampler normally runs no warmup at all, so there warmup
  // rows are assumed only when the row count says so.
  size_t n_warmup = 0;
  if (adapt_rows >= 0) {
    n_warmup = static_cast<size_t>(adapt_rows);
  } else if (config_long(f, "save_warmup", 0) != 0) {
    long thin = std::max(1L, config_long(f, "thin", 1));
    long nw = std::max(0L, config_long(f, "num_warmup", 0));
    long ns = std::max(0L, config_long(f, "num_samples", 0));
    size_t expect_w = static_cast<size_t>((nw + thin - 1) / thin);
    size_t expect_s = static_cast<size_t>((ns + thin - 1) / thin);
    if (!f.fixed_param || rows.size() == expect_w + expect_s)
      n_warmup = expect_w;
  }
  n_warmup = std::min(n_warmup, rows.size());
  f.warmup.assign(std::make_move_iterator(rows.begin()),
                  std::make_move_iterator(rows.begin() + n_warmup));
  f.draws.assign(std::make_move_iterator(rows.begin() + n_warmup),
                 std::make_move_iterator(rows.end()));
  return f;
}

// "theta.1" -> "theta[1]", "M.1.2" -> "M[1,2]" (tuples: parts split at ':').
std::string pretty_name(const std::string& raw) {
  std::string name = raw;
  stan::io::prettify_stan_csv_name(name);
  return name;
}


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
