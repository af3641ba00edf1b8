#include "fstore/monitoring/usage_recorder.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace fstore::monitoring {
namespace json = boost::json;

UsageRecorder::UsageRecorder(Sink sink, std::chrono::milliseconds interval)
    : sink_(std::move(sink)) {
  thread_.Start(interval, [this] {
    if (Status st = Flush(); !st.ok()) {
      spdlog::warn("writing usage counts failed (kept for the next try): {}", st.ToString());
    }
  });
}

UsageRecorder::~UsageRecorder() {
  thread_.Stop();
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

void UsageRecorder::AddRequest(std::string_view day, std::string_view key_id,
                               const std::vector<SetUse>& sets) {
  thread_local std::string shape;
  shape.clear();
  shape.append(day).append(1, '\x1f').append(key_id);
  for (const SetUse& s : sets) {
    shape.append(1, '\x1e').append(s.feature_set).append(1, s.online ? '1' : '0');
    for (const std::string& f : *s.features) shape.append(1, '\x1f').append(f);
  }
  std::lock_guard lock(mutex_);
  auto [it, inserted] = shapes_.try_emplace(shape);
  Shape& entry = it->second;
  if (inserted) {
    entry.day = std::string(day);
    entry.key_id = std::string(key_id);
    for (const SetUse& s : sets) {
      Shape::Set set{.feature_set = std::string(s.feature_set), .features = {}, .online = s.online};
      for (const std::string& f : *s.features) {
        if (std::find(set.features.begin(), set.features.end(), f) == set.features.end()) {
          set.features.push_back(f);
        }
      }
      entry.sets.push_back(std::move(set));
    }
  }
  ++entry.requests;
  for (size_t i = 0; i < sets.size(); ++i) {
    entry.sets[i].entities += sets[i].entities;
    entry.sets[i].entities_found += sets[i].entities_found;
  }
}

Status UsageRecorder::Flush() {
  std::lock_guard flush_lock(flush_mutex_);
  std::map<Key, UsageCount> taken;
  std::unordered_map<std::string, Shape> shapes;
  {
    std::lock_guard lock(mutex_);
    taken.swap(pending_);
    shapes.swap(shapes_);
  }
  auto add = [&taken](UsageCount c) {
    auto [it, inserted] = taken.try_emplace(Key{c.day, c.key_id, c.feature_set, c.feature}, c);
    if (!inserted) {
      it->second.requests += c.requests;
      it->second.entities += c.entities;
      it->second.entities_found += c.entities_found;
    }
  };
  for (auto& [text, shape] : shapes) {
    add({shape.day, shape.key_id, std::string(kRequestRow), "", shape.requests, 0, 0});
    for (const Shape::Set& s : shape.sets) {
      add({shape.day, shape.key_id, s.feature_set, "", shape.requests, s.entities, 0});
      if (s.online) {
        add({shape.day, shape.key_id, s.feature_set, std::string(kOnlineRow), shape.requests,
             s.entities, s.entities_found});
      }
      for (const std::string& f : s.features) {
        add({shape.day, shape.key_id, s.feature_set, f, shape.requests, 0, 0});
      }
    }
  }
  if (taken.empty()) return Status::OK();
  std::vector<UsageCount> counts;
  counts.reserve(taken.size());
  for (auto& [key, c] : taken) counts.push_back(c);
  Status st = sink_(counts);
  if (!st.ok()) {
    // AddUsage is one transaction: nothing was added; keep the counts.
    std::vector<UsageCount> back;
    for (auto& [key, c] : taken) back.push_back(std::move(c));
    Add(back);
  }
  return st;
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
