using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Tapdisk.XenStore;

namespace Tapdisk.Tapback.Tests;

/// <summary>
/// A xenstored for tests: a real UNIX socket speaking the xs_wire protocol with the semantics of docs/misc/xenstore.txt
/// as control-xen.md Part II 5.2 records them (and as C xenstored 4.17 was seen to behave): absolute and relative
/// paths, permissions stored and inherited, watches firing on the node and its descendants (and on watched children
/// of a removed node), the initial event after the WATCH reply, events before the reply of the write that caused
/// them, transactions that fail with EAGAIN on conflict and fire their watches only on commit, and error names.
/// Every connection is dom0. Debian's C xenstored cannot serve here: without /dev/xen it needs -D, and then it
/// crashes on the first request (checked with xen-utils-4.17); oxenstored stops on setrlimit in this container.
/// </summary>
public sealed class TestXenStored : IDisposable
{
    private const string SelfDomainPath = "/local/domain/0";

    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Node> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _changed = new(StringComparer.Ordinal);
    private readonly List<Watch> _watches = [];
    private readonly Dictionary<uint, Transaction> _transactions = [];
    private readonly HashSet<uint> _introduced = [0];
    private readonly List<Connection> _connections = [];
    private readonly List<(XenStoreMessageType Type, string Payload)> _requests = [];
    private Socket? _listener;
    private long _generation;
    private uint _lastTransaction;

    public TestXenStored(string socketPath)
    {
        SocketPath = socketPath;
        _nodes["/"] = new Node(string.Empty, [new XenStorePermission(XenStoreAccess.None, 0)]);
        WriteNode("/local/domain/0", string.Empty, fire: false);
        Start();
    }

    public string SocketPath { get; }

    public XenStoreEndpoint Endpoint => XenStoreEndpoint.Socket(SocketPath);

    /// <summary>Commits to fail with EAGAIN regardless of conflicts (to exercise retries).</summary>
    public int ForcedConflicts { get; set; }

    public int CommittedTransactions { get; private set; }

    public int ConflictedTransactions { get; private set; }

    /// <summary>The payload of every request received, in order (type and printable text, NULs as '|').</summary>
    public IReadOnlyList<(XenStoreMessageType Type, string Payload)> Requests
    {
        get
        {
            lock (_lock)
            {
                return [.. _requests];
            }
        }
    }

    public int WatchCount
    {
        get
        {
            lock (_lock)
            {
                return _watches.Count;
            }
        }
    }

    public void Start()
    {
        File.Delete(SocketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        listener.Listen(16);
        _listener = listener;
        _ = Task.Run(() => AcceptLoopAsync(listener));
    }

    /// <summary>What a xenstored crash does to clients: listener and every connection gone, watches and transactions dropped. The tree is kept (as across a live update).</summary>
    public void Stop()
    {
        Connection[] connections;
        lock (_lock)
        {
            _listener?.Dispose();
            _listener = null;
            connections = [.. _connections];
            _connections.Clear();
            _watches.Clear();
            _transactions.Clear();
        }

        foreach (Connection c in connections)
        {
            c.Close();
        }

        if (File.Exists(SocketPath))
        {
            File.Delete(SocketPath);
        }
    }

    public void Dispose() => Stop();

    // ---- The toolstack's and the frontend's side: direct access to the store, firing watches as a client would. ----

    public void Write(string path, string value)
    {
        lock (_lock)
        {
            WriteNode(path, value, fire: true);
        }
    }

    public string? Read(string path)
    {
        lock (_lock)
        {
            return _nodes.TryGetValue(path, out Node? n) ? n.Value : null;
        }
    }

    public bool Exists(string path) => Read(path) is not null;

    public void Remove(string path)
    {
        lock (_lock)
        {
            RemoveNode(path);
        }
    }

    public IReadOnlyList<XenStorePermission>? Permissions(string path)
    {
        lock (_lock)
        {
            return _nodes.TryGetValue(path, out Node? n) ? [.. n.Permissions] : null;
        }
    }

    public void SetPermissions(string path, params XenStorePermission[] permissions)
    {
        lock (_lock)
        {
            _nodes[path] = _nodes[path] with { Permissions = permissions };
            Touch(path);
            Fire(path, recurse: false);
        }
    }

    /// <summary>Writes several keys under a directory at once, as the toolstack's single transaction does.</summary>
    public void WriteAll(string directory, params (string Key, string Value)[] keys)
    {
        lock (_lock)
        {
            foreach ((string key, string value) in keys)
            {
                WriteNode(directory + "/" + key, value, fire: true);
            }
        }
    }

    public void IntroduceDomain(uint domid)
    {
        lock (_lock)
        {
            _introduced.Add(domid);
            Fire("@introduceDomain", recurse: false);
        }
    }

    public void ReleaseDomain(uint domid)
    {
        lock (_lock)
        {
            _introduced.Remove(domid);
            Fire("@releaseDomain", recurse: false);
        }
    }

    /// <summary>Sends raw bytes to every client (to test a client against a broken server).</summary>
    public void SendRawToAll(byte[] bytes)
    {
        lock (_lock)
        {
            foreach (Connection c in _connections)
            {
                c.Send(bytes);
            }
        }
    }

    // ---- Server ----

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }

            var connection = new Connection(socket);
            lock (_lock)
            {
                if (!ReferenceEquals(_listener, listener))
                {
                    connection.Close();
                    continue;
                }

                _connections.Add(connection);
            }

            _ = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Connection connection)
    {
        byte[] header = new byte[XenStoreHeader.Size];
        try
        {
            while (true)
            {
                if (await connection.Stream.ReadAtLeastAsync(header, header.Length, throwOnEndOfStream: false).ConfigureAwait(false) < header.Length)
                {
                    break;
                }

                XenStoreHeader h = XenStoreHeader.Read(header);
                if (h.Length > XenStoreHeader.PayloadMax)
                {
                    break; // xenstored kills a connection that exceeds the payload limit
                }

                byte[] payload = new byte[h.Length];
                if (await connection.Stream.ReadAtLeastAsync(payload, payload.Length, throwOnEndOfStream: false).ConfigureAwait(false) < payload.Length)
                {
                    break;
                }

                lock (_lock)
                {
                    if (!_connections.Contains(connection))
                    {
                        break;
                    }

                    _requests.Add((h.Type, Encoding.UTF8.GetString(payload).Replace('\0', '|')));
                    (XenStoreMessageType type, byte[] reply, Action? after) = Handle(connection, h, payload);
                    connection.Send(Message(type, h.RequestId, h.TransactionId, reply));
                    after?.Invoke();
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // client went away
        }

        lock (_lock)
        {
            _connections.Remove(connection);
            _watches.RemoveAll(w => w.Connection == connection);
        }

        connection.Close();
    }

    private (XenStoreMessageType, byte[], Action?) Handle(Connection connection, XenStoreHeader h, byte[] payload)
    {
        string[] args = Split(payload);
        try
        {
            Transaction? tx = null;
            if (h.TransactionId != 0 && h.Type is not (XenStoreMessageType.Watch or XenStoreMessageType.Unwatch))
            {
                if (!_transactions.TryGetValue(h.TransactionId, out tx) || tx.Connection != connection)
                {
                    return Error("ENOENT");
                }
            }

            switch (h.Type)
            {
                case XenStoreMessageType.Read:
                    {
                        string path = Resolve(args, 0);
                        Node node = Lookup(tx, path) ?? throw new StoreError("ENOENT");
                        return (h.Type, Encoding.UTF8.GetBytes(node.Value), null);
                    }

                case XenStoreMessageType.Directory:
                    {
                        string path = Resolve(args, 0);
                        _ = Lookup(tx, path) ?? throw new StoreError("ENOENT");
                        return (h.Type, Strings(Children(tx is null ? _nodes : tx.Nodes, path)), null);
                    }

                case XenStoreMessageType.GetPermissions:
                    {
                        string path = Resolve(args, 0);
                        Node node = Lookup(tx, path) ?? throw new StoreError("ENOENT");
                        return (h.Type, Strings([.. node.Permissions.Select(p => p.ToString())]), null);
                    }

                case XenStoreMessageType.Write:
                    {
                        int nul = Array.IndexOf(payload, (byte)0);
                        if (nul < 0)
                        {
                            throw new StoreError("EINVAL");
                        }

                        string path = ResolvePath(Encoding.UTF8.GetString(payload, 0, nul));
                        string value = Encoding.UTF8.GetString(payload, nul + 1, payload.Length - nul - 1);
                        Mutate(tx, path, () => WriteNode(path, value, fire: true), t => WriteInto(t.Nodes, path, value));
                        return Ok(h.Type);
                    }

                case XenStoreMessageType.Mkdir:
                    {
                        string path = Resolve(args, 0);
                        Mutate(tx, path, () => { if (!_nodes.ContainsKey(path)) { WriteNode(path, string.Empty, fire: true); } }, t => { if (!t.Nodes.ContainsKey(path)) { WriteInto(t.Nodes, path, string.Empty); } });
                        return Ok(h.Type);
                    }

                case XenStoreMessageType.Remove:
                    {
                        string path = Resolve(args, 0);
                        if (path == "/")
                        {
                            throw new StoreError("EINVAL");
                        }

                        SortedDictionary<string, Node> nodes = tx?.Nodes ?? _nodes;
                        if (!nodes.ContainsKey(path) && !nodes.ContainsKey(Parent(path)))
                        {
                            throw new StoreError("ENOENT");
                        }

                        Mutate(tx, path, () => RemoveNode(path), t => RemoveFrom(t.Nodes, path));
                        return Ok(h.Type);
                    }

                case XenStoreMessageType.SetPermissions:
                    {
                        string path = Resolve(args, 0);
                        if (args.Length < 2)
                        {
                            throw new StoreError("EINVAL");
                        }

                        var permissions = new List<XenStorePermission>();
                        foreach (string text in args[1..])
                        {
                            permissions.Add(XenStorePermission.TryParse(text, out XenStorePermission p) ? p : throw new StoreError("EINVAL"));
                        }

                        SortedDictionary<string, Node> nodes = tx?.Nodes ?? _nodes;
                        if (!nodes.ContainsKey(path))
                        {
                            throw new StoreError("ENOENT");
                        }

                        Mutate(
                            tx,
                            path,
                            () => { _nodes[path] = _nodes[path] with { Permissions = [.. permissions] }; Touch(path); Fire(path, recurse: false); },
                            t => t.Nodes[path] = t.Nodes[path] with { Permissions = [.. permissions] });
                        return Ok(h.Type);
                    }

                case XenStoreMessageType.Watch:
                    {
                        if (args.Length < 2)
                        {
                            throw new StoreError("EINVAL");
                        }

                        string given = args[0];
                        string path = given.StartsWith('@') ? given : ResolvePath(given);
                        if (_watches.Any(w => w.Connection == connection && w.Path == path && w.Token == args[1]))
                        {
                            throw new StoreError("EEXIST");
                        }

                        var watch = new Watch(connection, path, args[1], Relative: !given.StartsWith('/') && !given.StartsWith('@'));
                        _watches.Add(watch);

                        // The socket sends the initial event after the reply (control-xen.md Part II 5.2).
                        return (h.Type, Strings(["OK"]), () => Deliver(watch, path));
                    }

                case XenStoreMessageType.Unwatch:
                    {
                        string given = args.Length > 0 ? args[0] : throw new StoreError("EINVAL");
                        string path = given.StartsWith('@') ? given : ResolvePath(given);
                        int removed = _watches.RemoveAll(w => w.Connection == connection && w.Path == path && w.Token == args[1]);
                        return removed == 0 ? Error("ENOENT") : Ok(h.Type);
                    }

                case XenStoreMessageType.TransactionStart:
                    {
                        if (h.TransactionId != 0)
                        {
                            throw new StoreError("EBUSY");
                        }

                        uint id = ++_lastTransaction;
                        _transactions[id] = new Transaction(connection, _generation, new SortedDictionary<string, Node>(_nodes, StringComparer.Ordinal));
                        return (h.Type, Strings([id.ToString(CultureInfo.InvariantCulture)]), null);
                    }

                case XenStoreMessageType.TransactionEnd:
                    {
                        if (tx is null)
                        {
                            throw new StoreError("ENOENT");
                        }

                        _transactions.Remove(h.TransactionId);
                        if (args.Length == 0 || args[0] is not ("T" or "F"))
                        {
                            throw new StoreError("EINVAL");
                        }

                        if (args[0] == "F")
                        {
                            return Ok(h.Type);
                        }

                        bool conflict = tx.Accessed.Any(p => _changed.TryGetValue(p, out long g) && g > tx.StartGeneration);
                        if (conflict || ForcedConflicts > 0)
                        {
                            ForcedConflicts = Math.Max(0, ForcedConflicts - 1);
                            ConflictedTransactions++;
                            throw new StoreError("EAGAIN");
                        }

                        CommittedTransactions++;
                        foreach (Action apply in tx.Log)
                        {
                            apply();
                        }

                        return Ok(h.Type);
                    }

                case XenStoreMessageType.GetDomainPath:
                    return (h.Type, Strings([$"/local/domain/{(args.Length > 0 ? args[0] : throw new StoreError("EINVAL"))}"]), null);

                case XenStoreMessageType.IsDomainIntroduced:
                    {
                        if (args.Length == 0 || !uint.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint domid))
                        {
                            throw new StoreError("EINVAL");
                        }

                        return (h.Type, Strings([_introduced.Contains(domid) ? "T" : "F"]), null);
                    }

                default:
                    return Error("ENOSYS");
            }
        }
        catch (StoreError e)
        {
            return Error(e.Name);
        }
    }

    private static void Mutate(Transaction? tx, string path, Action direct, Action<Transaction> inTransaction)
    {
        if (tx is null)
        {
            direct();
            return;
        }

        tx.Accessed.Add(path);
        inTransaction(tx);
        tx.Log.Add(direct);
    }

    private Node? Lookup(Transaction? tx, string path)
    {
        if (tx is null)
        {
            return _nodes.GetValueOrDefault(path);
        }

        tx.Accessed.Add(path);
        return tx.Nodes.GetValueOrDefault(path);
    }

    private void WriteNode(string path, string value, bool fire)
    {
        WriteInto(_nodes, path, value);
        Touch(path);
        if (fire)
        {
            Fire(path, recurse: false);
        }
    }

    private static void WriteInto(SortedDictionary<string, Node> nodes, string path, string value)
    {
        if (nodes.TryGetValue(path, out Node? existing))
        {
            nodes[path] = existing with { Value = value };
            return;
        }

        // Missing parents are created; every new node inherits its parent's permissions (xenlab obstacle 8).
        string parent = Parent(path);
        if (!nodes.ContainsKey(parent))
        {
            WriteInto(nodes, parent, string.Empty);
        }

        nodes[path] = new Node(value, nodes[parent].Permissions);
    }

    private void RemoveNode(string path)
    {
        if (!_nodes.ContainsKey(path))
        {
            return;
        }

        RemoveFrom(_nodes, path);
        Touch(path);
        Fire(path, recurse: true);
    }

    private static void RemoveFrom(SortedDictionary<string, Node> nodes, string path)
    {
        foreach (string key in nodes.Keys.Where(k => k == path || k.StartsWith(path + "/", StringComparison.Ordinal)).ToArray())
        {
            nodes.Remove(key);
        }
    }

    private void Touch(string path)
    {
        _generation++;
        _changed[path] = _generation;

        // A change below a directory is a change of its listing for transactions that read it.
        for (string p = path; p != "/"; p = Parent(p))
        {
            _changed[Parent(p)] = _generation;
        }
    }

    private void Fire(string path, bool recurse)
    {
        foreach (Watch w in _watches.ToArray())
        {
            if (w.Path == path || (!path.StartsWith('@') && path.StartsWith(w.Path == "/" ? "/" : w.Path + "/", StringComparison.Ordinal)))
            {
                Deliver(w, path);
            }
            else if (recurse && w.Path.StartsWith(path + "/", StringComparison.Ordinal))
            {
                Deliver(w, w.Path);
            }
        }
    }

    private static void Deliver(Watch watch, string absolutePath)
    {
        string path = watch.Relative && absolutePath.StartsWith(SelfDomainPath + "/", StringComparison.Ordinal) ? absolutePath[(SelfDomainPath.Length + 1)..] : absolutePath;
        watch.Connection.Send(Message(XenStoreMessageType.WatchEvent, 0, 0, Strings([path, watch.Token])));
    }

    private static string Resolve(string[] args, int index) => args.Length > index ? ResolvePath(args[index]) : throw new StoreError("EINVAL");

    private static string ResolvePath(string path)
    {
        if (!path.StartsWith('/'))
        {
            path = SelfDomainPath + "/" + path;
        }

        if (path.Length > 1 && (path.EndsWith('/') || path.Contains("//", StringComparison.Ordinal)))
        {
            throw new StoreError("EINVAL");
        }

        foreach (char c in path)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '/' or '-' or '_' or '@'))
            {
                throw new StoreError("EINVAL");
            }
        }

        return path;
    }

    private static string Parent(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    private static List<string> Children(SortedDictionary<string, Node> nodes, string path)
    {
        string prefix = path == "/" ? "/" : path + "/";
        return [.. nodes.Keys.Where(k => k.Length > prefix.Length && k.StartsWith(prefix, StringComparison.Ordinal) && k.IndexOf('/', prefix.Length) < 0).Select(k => k[prefix.Length..])];
    }

    private static string[] Split(byte[] payload)
    {
        string text = Encoding.UTF8.GetString(payload);
        if (text.EndsWith('\0'))
        {
            text = text[..^1];
        }

        return text.Length == 0 ? [] : text.Split('\0');
    }

    private static byte[] Strings(IEnumerable<string> parts)
    {
        var bytes = new List<byte>();
        foreach (string part in parts)
        {
            bytes.AddRange(Encoding.UTF8.GetBytes(part));
            bytes.Add(0);
        }

        return [.. bytes];
    }

    private static (XenStoreMessageType, byte[], Action?) Ok(XenStoreMessageType type) => (type, Strings(["OK"]), null);

    private static (XenStoreMessageType, byte[], Action?) Error(string name) => (XenStoreMessageType.Error, Strings([name]), null);

    private static byte[] Message(XenStoreMessageType type, uint requestId, uint transactionId, byte[] payload)
    {
        byte[] message = new byte[XenStoreHeader.Size + payload.Length];
        new XenStoreHeader(type, requestId, transactionId, (uint)payload.Length).Write(message);
        payload.CopyTo(message, XenStoreHeader.Size);
        return message;
    }

    internal static byte[] RawHeader(uint type, uint requestId, uint length)
    {
        byte[] header = new byte[XenStoreHeader.Size];
        BinaryPrimitives.WriteUInt32LittleEndian(header, type);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), requestId);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), length);
        return header;
    }

    private sealed record Node(string Value, XenStorePermission[] Permissions);

    private sealed record Watch(Connection Connection, string Path, string Token, bool Relative);

    private sealed record Transaction(Connection Connection, long StartGeneration, SortedDictionary<string, Node> Nodes)
    {
        public HashSet<string> Accessed { get; } = new(StringComparer.Ordinal);

        public List<Action> Log { get; } = [];
    }

    private sealed class StoreError(string name) : Exception(name)
    {
        public string Name { get; } = name;
    }

    /// <summary>One client; replies and events go out in order through a queue so the store lock never waits on a socket.</summary>
    private sealed class Connection
    {
        private readonly Socket _socket;
        private readonly Channel<byte[]> _out = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });

        public Connection(Socket socket)
        {
            _socket = socket;
            Stream = new NetworkStream(socket, ownsSocket: false);
            _ = Task.Run(WriteLoopAsync);
        }

        public NetworkStream Stream { get; }

        public void Send(byte[] message) => _out.Writer.TryWrite(message);

        public void Close()
        {
            _out.Writer.TryComplete();
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // teardown: already disconnected
            }
            catch (ObjectDisposedException)
            {
                // teardown: already closed
            }

            _socket.Dispose();
        }

        private async Task WriteLoopAsync()
        {
            try
            {
                await foreach (byte[] message in _out.Reader.ReadAllAsync().ConfigureAwait(false))
                {
                    await Stream.WriteAsync(message).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                // teardown: the client or the server side closed
            }
        }
    }
}
