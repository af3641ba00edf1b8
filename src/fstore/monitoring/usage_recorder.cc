#include "fstore/monitoring/usage_recorder.h"

#include <spdlog/spdlog.h>

namespace fstore::monitoring {
namespace json = boost::json;

UsageRecorder::UsageRecorder(Registry* registry, std::chrono::milliseconds interval)
    : registry_(registry), interval_(interval), thread_([this] { Loop(); }) {}

UsageRecorder::~UsageRecorder() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (Status st = Flush(); !st.ok()) {
    spdlog::warn("usage counts lost at shutdown: {}", st.ToString());
  }
}

void UsageRecorder::Add(const std::vector<UsageCount>& counts) {
  std::lock_guard lock(mutex_);
  for (const UsageCount& c : counts) {
    auto [it, inserted] =
        pending_.try_emplace(Key{c.day, c.key_id, c.feature_set, c.feature}, c);
    if (!inserted) {
      it->second.requests += c.requests;
      it->second.entities += c.entities;
      it->second.entities_found += c.entities_found;
    }
  }
}

Status UsageRecorder::Flush() {
  std::lock_guard flush_lock(flush_mutex_);
  std::map<Key, UsageCount> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(pending_);
  }
  if (taken.empty()) return Status::OK();
  std::vector<UsageCount> counts;
  counts.reserve(taken.size());
  for (auto& [key, c] : taken) counts.push_back(c);
  Status st = registry_->AddUsage(counts);
  if (!st.ok()) {
    // AddUsage is one transaction: nothing was added; keep the counts.
    std::vector<UsageCount> back;
    for (auto& [key, c] : taken) back.push_back(std::move(c));
    Add(back);
  }
  return st;
}

void UsageRecorder::Loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, interval_, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (Status st = Flush(); !st.ok()) {
      spdlog::warn("writing usage counts failed (kept for the next try): {}", st.ToString());
    }
    lock.lock();
  }
}

namespace {

struct SetTotals {
  int64_t requests = 0, entities = 0, online_entities = 0, found = 0;
};

json::value Coverage(int64_t found, int64_t requested) {
  if (requested <= 0) return nullptr;
  return static_cast<double>(found) / static_cast<double>(requested);
}

struct DayTotals {
  std::map<std::string, SetTotals> sets;
  std::map<std::string, int64_t> features;
  std::map<std::string, int64_t> keys;
  int64_t requests = 0;  // HTTP serving requests

  json::object ToJson() const {
    SetTotals all;
    json::object sets_json, features_json, keys_json;
    for (const auto& [name, t] : sets) {
      all.requests += t.requests;
      all.entities += t.entities;
      all.online_entities += t.online_entities;
      all.found += t.found;
      sets_json[name] = json::object{{"requests", t.requests},
                                     {"entities_requested", t.entities},
                                     {"online_entities_requested", t.online_entities},
                                     {"entities_found", t.found},
                                     {"coverage", Coverage(t.found, t.online_entities)}};
    }
    for (const auto& [name, n] : features) features_json[name] = n;
    for (const auto& [name, n] : keys) keys_json[name] = n;
    return json::object{{"requests", requests},
                        {"feature_set_requests", all.requests},
                        {"entities_requested", all.entities},
                        {"online_entities_requested", all.online_entities},
                        {"entities_found", all.found},
                        {"coverage", Coverage(all.found, all.online_entities)},
                        {"feature_sets", std::move(sets_json)},
                        {"features", std::move(features_json)},
                        {"api_keys", std::move(keys_json)}};
  }
};

}  // namespace

json::object UsageReport(const std::vector<UsageCount>& rows, std::string_view start_day,
                         std::string_view end_day, std::string_view feature_set,
                         std::string_view key_id) {
  std::map<std::string, DayTotals> days;
  DayTotals totals;
  for (const UsageCount& r : rows) {
    if (r.day < start_day || r.day > end_day) continue;
    if (!feature_set.empty() && r.feature_set != feature_set) continue;  // request rows too
    if (!key_id.empty() && r.key_id != key_id) continue;
    for (DayTotals* t : {&days[r.day], &totals}) {
      if (r.feature_set == kRequestRow) {
        t->requests += r.requests;
        t->keys[r.key_id.empty() ? "anonymous" : r.key_id] += r.requests;
      } else if (r.feature.empty()) {
        SetTotals& s = t->sets[r.feature_set];
        s.requests += r.requests;
        s.entities += r.entities;
        if (!feature_set.empty()) {
          t->requests += r.requests;
          t->keys[r.key_id.empty() ? "anonymous" : r.key_id] += r.requests;
        }
      } else if (r.feature == kOnlineRow) {
        SetTotals& s = t->sets[r.feature_set];
        s.online_entities += r.entities;
        s.found += r.entities_found;
      } else {
        t->features[r.feature_set + ":" + r.feature] += r.requests;
      }
    }
  }
  json::array days_json;
  for (const auto& [day, t] : days) {
    json::object o = t.ToJson();
    o["date"] = day;
    days_json.emplace_back(std::move(o));
  }
  return json::object{{"start_date", start_day},
                      {"end_date", end_day},
                      {"days", std::move(days_json)},
                      {"totals", totals.ToJson()}};
}

}  // namespace fstore::monitoring
