#include "palm/controller/template.h"

#include "gtest/gtest.h"

namespace palm::controller {
namespace {

struct Fixture {
  model::AgentSpec spec;
  model::Deployment d;
  model::Instance in;
  std::string endpoint = "http://127.0.0.1:7070";
  std::string token = "tok";
  std::map<std::string, std::string> base = {{"PATH", "/usr/bin:/bin"},
                                             {"PALM_TOKEN", "daemon-secret"},
                                             {"HOME", "/root"}};
  Fixture() {
    spec.name = "buyer";
    spec.version = "1.0.0";
    spec.command = {"python3", "agent.py", "--role", "{{role}}"};
    spec.params = {{"role", "buyer"}};
    spec.env = {{"MODEL", "small"}, {"ROLE", "{{ role }}"}};
    spec.config = {{"funding", 100}, {"strategy", "momentum"}, {"who", "{{role}}"}};
    spec.ports = {"http", "admin-api"};
    spec.resources.max_open_files = 64;
    d.name = "fleet";
    d.spec = "buyer@1.0.0";
    d.env = {{"MODEL", "large"}};
    d.config = {{"strategy", "aggressive"}};
    in.id = "fleet-001";
    in.revision = 3;
    in.ports = {{"http", 4100}, {"admin-api", 4101}};
    in.log_path = "/tmp/x.log";
  }
  absl::StatusOr<runtime::SpawnRequest> Render() {
    return RenderSpawn({spec, d, in, endpoint, token, base});
  }
};

TEST(RenderSpawn, BuildsTheAgentContractEnvironment) {
  Fixture f;
  auto req = f.Render();
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->argv, (std::vector<std::string>{"python3", "agent.py", "--role", "buyer"}));
  EXPECT_EQ(req->env.at("PALM_INSTANCE_ID"), "fleet-001");
  EXPECT_EQ(req->env.at("PALM_DEPLOYMENT"), "fleet");
  EXPECT_EQ(req->env.at("PALM_REVISION"), "3");
  EXPECT_EQ(req->env.at("PALM_TENANT"), "default");
  EXPECT_EQ(req->env.at("PALM_ENDPOINT"), "http://127.0.0.1:7070");
  EXPECT_EQ(req->env.at("PALM_TOKEN"), "tok");  // the daemon's own PALM_TOKEN never leaks
  EXPECT_EQ(req->env.at("PALM_PORT_HTTP"), "4100");
  EXPECT_EQ(req->env.at("PALM_PORT_ADMIN_API"), "4101");
  EXPECT_EQ(req->env.at("MODEL"), "large");  // deployment env over spec env
  EXPECT_EQ(req->env.at("ROLE"), "buyer");
  EXPECT_EQ(req->env.at("PATH"), "/usr/bin:/bin");
  auto config = model::Json::parse(req->env.at("PALM_CONFIG"));
  EXPECT_EQ(config, (model::Json{{"funding", 100}, {"strategy", "aggressive"}, {"who", "buyer"}}));
  EXPECT_EQ(req->limits.max_open_files, 64);
  EXPECT_EQ(req->log_path, "/tmp/x.log");
}

TEST(RenderSpawn, UnknownParameterNamesWhereItIs) {
  Fixture f;
  f.spec.command = {"agent", "{{nope}}"};
  auto req = f.Render();
  ASSERT_FALSE(req.ok());
  EXPECT_NE(req.status().message().find("spec.command[1]: unknown parameter {{nope}}"),
            std::string::npos)
      << req.status();
}

}  // namespace
}  // namespace palm::controller
