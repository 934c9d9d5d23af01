// stan_csv.hpp -- reading Stan sampler CSV files, shared by bin/stansummary and
// bin/diagnose (bayesglmm toolchain; written for this project).
#ifndef BAYESGLMM_TOOLS_STAN_CSV_HPP
#define BAYESGLMM_TOOLS_STAN_CSV_HPP

#include <stan/io/stan_csv_reader.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace bgtools {


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
}  // namespace bgtools

#endif
