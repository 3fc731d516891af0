-- the extension needs shared_preload_libraries (the test instance has it)
CREATE EXTENSION chronicle_raft;
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'chronicle_raft';
SELECT amname, amtype FROM pg_am WHERE amname = 'chronicle';
SHOW shared_preload_libraries;
-- without chronicle_raft.initial_cluster the server is a cluster of one
SELECT node_id, role, leader_id, replicated FROM chronicle.status();
SHOW chronicle_raft.commit_wait;
SET chronicle_raft.commit_wait = 'sometimes';
